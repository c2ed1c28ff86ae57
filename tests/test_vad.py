"""edge.speech.vad: Silero VAD on plain onnxruntime, whole clips and streamed in blocks of any size."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.errors import VadError
from edge.speech.audio import SAMPLE_RATE, load_audio
from edge.speech.vad import CHUNK_SAMPLES, UtteranceSegmenter, VoiceActivityDetector

PHRASES = ("turn on the kitchen lights", "what is the weather tomorrow")
GAP_S = 1.5
ROOT = Path(__file__).resolve().parent.parent


def speak(text: str, folder) -> np.ndarray:
    """``text`` spoken by espeak-ng as float32 16 kHz, with espeak's own leading and trailing silence trimmed."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    path = folder / (text.replace(" ", "_") + ".wav")
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    audio = load_audio(path)
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    return audio[loud[0] : loud[-1] + 1]


def two_phrases(folder) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """1 s silence, phrase, 1.5 s silence, phrase, 1 s silence; and where the two phrases are (samples)."""
    silence = lambda seconds: np.zeros(int(seconds * SAMPLE_RATE), np.float32)  # noqa: E731
    first, second = (speak(p, folder) for p in PHRASES)
    parts = [silence(1.0), first, silence(GAP_S), second, silence(1.0)]
    starts = np.cumsum([0] + [len(p) for p in parts])
    return np.concatenate(parts), [(starts[1], starts[2]), (starts[3], starts[4])]


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    return two_phrases(tmp_path_factory.mktemp("speech"))


@pytest.fixture
def vad(vad_path):
    return VoiceActivityDetector(vad_path)


def test_whole_clip_finds_the_two_phrases(vad, speech):
    audio, truth = speech
    segments = vad.speech_segments(audio)
    assert len(segments) == 2, segments
    for (start, end), (true_start, true_end) in zip(segments, truth, strict=True):
        # padding (150 ms) and the 32 ms chunk grid put the edges a little outside the phrase
        assert true_start - 0.3 * SAMPLE_RATE <= start <= true_start + 0.1 * SAMPLE_RATE, (start, true_start)
        assert true_end - 0.1 * SAMPLE_RATE <= end <= true_end + 0.3 * SAMPLE_RATE, (end, true_end)


def test_streaming_in_random_blocks_gives_the_same_utterances(vad, speech):
    audio, _ = speech
    expected = vad.speech_segments(audio)
    rng = np.random.default_rng(0)
    segmenter = UtteranceSegmenter(vad)
    utterances, position = [], 0
    while position < len(audio):
        size = int(rng.choice([1, 7, 100, CHUNK_SAMPLES, 1000, 4096]))
        utterances += segmenter.feed(audio[position : position + size])
        position += size
    utterances += segmenter.flush()
    assert [(u.start_sample, u.end_sample) for u in utterances] == expected
    for u in utterances:
        np.testing.assert_array_equal(u.audio, audio[u.start_sample : u.end_sample])
        assert u.start == u.start_sample / SAMPLE_RATE and u.duration > 1.0


def test_utterance_ends_after_min_silence(vad, speech):
    audio, truth = speech
    segmenter = UtteranceSegmenter(vad, min_silence_ms=500)
    emitted_at = None
    for position in range(0, len(audio), CHUNK_SAMPLES):
        if utterances := segmenter.feed(audio[position : position + CHUNK_SAMPLES], captured_at=float(position)):
            emitted_at = position + CHUNK_SAMPLES
            assert utterances[0].detected_at == position  # stamped with the capture time of the block that ended it
            break
    # the first phrase is reported about 0.5 s after it ends: during the gap, before the second phrase
    assert truth[0][1] + 0.4 * SAMPLE_RATE <= emitted_at <= truth[0][1] + 0.8 * SAMPLE_RATE


def test_flush_returns_speech_cut_off_by_the_end_of_stream(vad, speech):
    audio, truth = speech
    segmenter = UtteranceSegmenter(vad)
    assert segmenter.feed(audio[: truth[0][1] - 1000]) == []
    (utterance,) = segmenter.flush()
    assert utterance.end_sample == truth[0][1] - 1000
    assert segmenter.flush() == []


def test_long_speech_is_cut_at_max_utterance(vad, speech):
    audio, _ = speech
    utterances = vad.speech_segments(audio, max_utterance_s=0.8, min_speech_ms=100)
    assert len(utterances) > 2
    assert all(end - start <= 0.8 * SAMPLE_RATE for start, end in utterances)


@pytest.mark.parametrize("kind", ["silence", "noise", "hum"])
def test_no_speech_gives_no_utterances(vad, kind):
    t = np.arange(4 * SAMPLE_RATE) / SAMPLE_RATE
    rng = np.random.default_rng(1)
    audio = {
        "silence": np.zeros_like(t),
        "noise": 0.05 * rng.standard_normal(len(t)),
        "hum": 0.2 * np.sin(2 * np.pi * 50 * t) + 0.01 * rng.standard_normal(len(t)),
    }[kind].astype(np.float32)
    assert vad.speech_segments(audio) == []
    segmenter = UtteranceSegmenter(vad)
    assert segmenter.feed(audio) + segmenter.flush() == []


def test_probability_is_streaming_and_resettable(vad, speech):
    audio, truth = speech
    chunks = audio[: truth[0][1] // CHUNK_SAMPLES * CHUNK_SAMPLES].reshape(-1, CHUNK_SAMPLES)
    first = [vad.probability(c) for c in chunks]
    vad.reset()
    assert [vad.probability(c) for c in chunks] == first
    assert max(first) > 0.9 and first[0] < 0.1
    np.testing.assert_allclose(vad.probabilities(audio)[: len(first)], first, atol=1e-6)
    with pytest.raises(ValueError, match="512"):
        vad.probability(np.zeros(100, np.float32))


def test_bad_model_paths(tmp_path):
    with pytest.raises(VadError, match="not found") as e:
        VoiceActivityDetector(tmp_path / "missing.onnx")
    assert "silero-vad" in e.value.hint
    with pytest.raises(VadError, match="not found"):
        VoiceActivityDetector(None)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(VadError, match="Cannot load"):
        VoiceActivityDetector(garbage)


def test_segmenter_rejects_padding_longer_than_the_silence(vad):
    with pytest.raises(ValueError, match="speech_pad_ms"):
        UtteranceSegmenter(vad, min_silence_ms=100, speech_pad_ms=200)


def test_finding_the_model_imports_no_torch(vad_path):
    probe = (
        "import sys, edge.speech.audio, edge.speech.vad, edge.speech.microphone\n"
        "assert edge.speech.vad.packaged_vad_path() is not None\n"
        "heavy = [m for m in ('torch', 'silero_vad', 'transformers', 'sounddevice') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
