"""Wake words: the packaged microWakeWord models hear their phrase spoken by espeak-ng, and nothing else."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest

from benchmarks.assistant import espeak, silence
from edge.errors import EdgeError
from tests.conftest import run_lean_cli

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("pymicro_wakeword") is None,
        reason="pymicro-wakeword is not installed (pip install 'edge[assistant]')",
    ),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng synthesizes the speech"),
]

PACKAGED = ["alexa", "hey_jarvis", "hey_mycroft", "okay_nabu"]


def detections(detector, audio: np.ndarray, block: int = 512) -> list[float]:
    detector.reset()
    found = []
    for start in range(0, len(audio), block):
        found += detector.feed(audio[start : start + block])
    return [sample / 16000 for sample in found]


@pytest.fixture(scope="module")
def okay_nabu():
    from edge.wakeword import load_wake_word

    return load_wake_word("okay_nabu")


def test_the_four_packaged_models_are_listed():
    from edge.wakeword import wake_word_names, wake_word_spec

    assert wake_word_names() == PACKAGED
    spec = wake_word_spec("Okay Nabu")  # the phrase as written also names it
    assert spec.name == "okay_nabu" and spec.phrase == "Okay Nabu" and spec.model_path.is_file()
    assert 0 < spec.probability_cutoff < 1 and spec.sliding_window_size >= 1


def test_an_unknown_wake_word_lists_the_ones_there_are():
    from edge.wakeword import load_wake_word

    with pytest.raises(EdgeError, match="no wake word 'hey siri'") as e:
        load_wake_word("hey siri")
    assert all(name in e.value.hint for name in PACKAGED)
    r = run_lean_cli("--assistant", "--wake", "hey siri", "--no-speak")
    assert r.returncode == 1 and "no wake word 'hey siri'" in r.stderr and "okay_nabu" in r.stderr
    from edge.cli import build_parser

    assert "alexa, hey_jarvis, hey_mycroft, okay_nabu" in " ".join(build_parser().format_help().split())


def test_okay_nabu_is_heard_once_where_it_is_said(okay_nabu):
    phrase = espeak("okay nabu")
    audio = np.concatenate([silence(1.0), phrase, silence(1.0)])
    heard = detections(okay_nabu, audio)
    assert len(heard) == 1, heard
    end = 1.0 + len(phrase) / 16000
    assert end - 0.3 <= heard[0] <= end + 0.5  # at the end of the phrase, not before it is said


@pytest.mark.parametrize("block", [160, 333, 4096])
def test_any_block_size_gives_the_same_detections(okay_nabu, block):
    audio = np.concatenate([silence(0.5), espeak("okay nabu"), silence(1.5), espeak("okay nabu"), silence(0.5)])
    assert detections(okay_nabu, audio, block) == detections(okay_nabu, audio, 512)
    assert len(detections(okay_nabu, audio, block)) == 2


def test_speech_without_the_phrase_does_not_wake_it(okay_nabu):
    talk = [espeak(t) for t in ("okay then, turn it on", "nobody knew the answer", "hey jarvis, what time is it")]
    audio = np.concatenate([np.concatenate([t, silence(0.5)]) for t in talk])
    assert detections(okay_nabu, audio) == []


def test_a_missing_runtime_names_the_extra(monkeypatch):
    import sys

    from edge.wakeword import WakeWordDetector, wake_word_spec

    spec = wake_word_spec("okay_nabu")
    monkeypatch.setitem(sys.modules, "pymicro_wakeword", None)  # makes the import raise ImportError
    with pytest.raises(EdgeError, match="wake words need pymicro-wakeword") as e:
        WakeWordDetector(spec)
    assert e.value.hint == "pip install 'edge[assistant]' (the pymicro-wakeword package and its models)"


@pytest.mark.skipif(importlib.util.find_spec("tflite") is None, reason="the export extra's tflite reader is missing")
@pytest.mark.parametrize("name", PACKAGED)
def test_the_onnx_conversion_follows_tflite(name):
    """export.wakeword's graph, run on onnxruntime, against the TFLite runtime on the same features."""
    from collections import deque

    import onnxruntime as ort
    from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures, Model

    from edge.wakeword import wake_word_spec
    from export.wakeword import INPUT, OUTPUT, convert

    spec = wake_word_spec(name)
    model, state = convert(spec.model_path)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    audio = np.concatenate([silence(0.5), espeak(spec.phrase.lower()), silence(0.5), espeak("turn on the light")])
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    features = list(MicroWakeWordFeatures().process_streaming(pcm))
    reference = MicroWakeWord.from_builtin(Model(name))
    window: deque[float] = deque(maxlen=spec.sliding_window_size)
    theirs, ours = [], []
    for start in range(0, len(features) - 2, 3):  # the models take 3 feature frames a call
        for f in features[start : start + 3]:
            probability = reference.process_streaming_prob(f)
        theirs.append(probability)
        outputs = session.run(
            None, {INPUT: np.concatenate(features[start : start + 3], axis=1).astype(np.float32)} | state
        )
        named = dict(zip((o.name for o in session.get_outputs()), outputs, strict=True))
        state = {k: named[k + "_next"] for k in state}
        window.append(float(named[OUTPUT][0, 0]))
        ours.append(sum(window) / len(window) if len(window) == window.maxlen else 0.0)
    assert np.abs(np.array(theirs) - np.array(ours)).max() <= 0.05
    cutoff = spec.probability_cutoff
    assert [p > cutoff for p in theirs] == [p > cutoff for p in ours]
    if name == "okay_nabu":  # the one espeak-ng's voice is heard saying (its "hey jarvis" is not, by either)
        assert max(ours) > cutoff
