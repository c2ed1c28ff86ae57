"""Whisper export and transcription on a tiny random Whisper built from a config (no download).

The exported graphs must compute what the transformers model computes: same greedy tokens on the
shipped check clip over a 30 s window, same logits when the decoder is fed several tokens at once.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import edge
from edge.bundle import SPEECH_RECOGNITION, VAD_FILE, open_bundle
from edge.speech.transcribe import SpeechRecognizer, said_again
from edge.speech.vad import packaged_vad_path
from tests.conftest import ROOT


def test_bundle_is_a_speech_bundle_with_a_passing_report(whisper_bundle):
    bundle = open_bundle(whisper_bundle("fp32"))
    m = bundle.manifest
    assert m.task == SPEECH_RECOGNITION and m.family == "whisper"
    assert {"encoder.onnx", "decoder.onnx", "tokenizer.json", "report.json"} <= set(m.files)
    assert (VAD_FILE in m.files) == (packaged_vad_path() is not None)
    report = json.loads((bundle.path / "report.json").read_text())
    assert report["fp32_vs_source_max_abs_logit_diff"] < 1e-3
    assert report["passed"]


def test_onnx_greedy_tokens_match_transformers(whisper_bundle, whisper_folder):
    from export.sources import resolve
    from export.speech import check_clip, load, source_transcribe

    model = load(resolve(str(whisper_folder))).model
    recognizer = edge.load(whisper_bundle("fp32"), audio_context="full")
    _, audio = check_clip()
    expected = source_transcribe(model, recognizer.speech, audio)
    # the runtime caps runaway output by audio length, cuts loops and passes over stutters (a random tiny
    # model says one token again and again): up to where it first did, it decodes as the source does
    got = recognizer.transcribe(audio).tokens
    assert len(got) > 0
    same = next(
        (i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b), min(len(got), len(expected))
    )
    assert same > 0
    if same < min(len(got), len(expected)):
        pieces = [recognizer.tokenizer.decode([t]) for t in expected[:same]]
        assert said_again(pieces, recognizer.tokenizer.decode([expected[same]])), (got, expected)


def test_decoder_prefill_equals_one_token_at_a_time(whisper_bundle):
    r = edge.load(whisper_bundle("fp32"))
    audio = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    tokens = [5, 9, 13, 17]
    stepwise = r.teacher_forced_logits(audio, tokens)  # start ids prefilled together, then one by one
    cross, cache = r.encode(audio), r._empty_cache()
    together = r._step(list(r.speech.start_ids) + tokens, cache, cross)
    np.testing.assert_allclose(together, stepwise[-1], atol=1e-4)


def test_int8_bundle_transcribes_and_is_smaller(whisper_bundle):
    size = lambda p: sum(f.stat().st_size for f in p.glob("*coder.onnx*"))  # noqa: E731
    assert size(whisper_bundle("int8")) < 0.7 * size(whisper_bundle("fp32"))
    transcript = edge.load(whisper_bundle("int8")).transcribe(np.zeros(8000, np.float32))
    assert transcript.audio_s == pytest.approx(0.5)
    assert transcript.processing_s > 0


def test_speech_refuses_text_only_precisions(whisper_folder, tmp_path):
    from export import export_bundle
    from export.sources import SourceError

    with pytest.raises(SourceError, match="not available for speech") as e:
        export_bundle(str(whisper_folder), tmp_path / "w", "int4", progress=lambda _: None)
    assert "fp32, int8" in e.value.hint
    assert not (tmp_path / "w").exists() and list(tmp_path.iterdir()) == []


def test_text_model_refuses_a_speech_bundle(whisper_bundle):
    from edge.errors import BundleError
    from edge.text.model import TextModel

    with pytest.raises(BundleError, match="speech-recognition"):
        TextModel(open_bundle(whisper_bundle("int8")))
    assert isinstance(edge.load(whisper_bundle("int8")), SpeechRecognizer)


def edge_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


def test_cli_transcribes_files_as_json_lines(whisper_bundle, tmp_path):
    from edge.speech.audio import SAMPLE_RATE
    from tests.test_audio import write_pcm

    files = []
    for i, rate in enumerate((16000, 44100)):
        t = np.arange(int(rate * 0.8)) / rate
        path = tmp_path / f"clip{i}.wav"
        write_pcm(path, 0.2 * np.sin(2 * np.pi * 440 * t), rate)
        files.append(path)
    r = edge_run("--model", str(whisper_bundle("int8")), "--audio", *map(str, files), "--json", "--threads", "1")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["file"] for row in rows] == [str(f) for f in files]
    for row in rows:
        assert set(row) == {"file", "transcript", "audio_s", "processing_s", "real_time_factor"}
        assert row["audio_s"] == pytest.approx(0.8, abs=1 / SAMPLE_RATE * 400)


def test_cli_names_the_right_flag_for_the_bundle(whisper_bundle, tiny_bundle, tmp_path):
    r = edge_run("--model", str(whisper_bundle("int8")), "--prompt", "hello")
    assert r.returncode == 1 and "speech-recognition bundle" in r.stderr and "--audio" in r.stderr
    r = edge_run("--model", str(tiny_bundle("llama", "fp32")), "--audio", str(tmp_path / "x.wav"))
    assert r.returncode == 1 and "text-generation bundle" in r.stderr and "--prompt" in r.stderr
    r = edge_run("--model", str(whisper_bundle("int8")), "--audio", str(tmp_path / "missing.wav"))
    assert r.returncode == 1 and "missing.wav" in r.stderr and "fix:" in r.stderr
