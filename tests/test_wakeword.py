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
    assert "pip install 'edge[assistant]'" in e.value.hint and "python -m export.wakeword" in e.value.hint


def reference_features(pcm: np.ndarray) -> np.ndarray:
    """pymicro-features' output: TFLite Micro's C frontend, fed 10 ms at a time."""
    from pymicro_features import MicroFrontend

    frontend, out, data, offset = MicroFrontend(), [], pcm.astype("<i2").tobytes(), 0
    while offset + 320 <= len(data):
        result = frontend.process_samples(data[offset : offset + 320])
        offset += 2 * result.samples_read
        if result.features:
            out.append(result.features)
    return np.array(out, np.float32)


@pytest.fixture(scope="module")
def speech_and_noise() -> np.ndarray:
    """Quiet, speech, loud clipped noise, a tone and speech again, as int16."""
    rng = np.random.default_rng(0)
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000)
    audio = np.concatenate(
        [silence(0.3), espeak("okay nabu, turn on the kitchen light"), 0.4 * rng.standard_normal(8000), tone,
         espeak("what is the capital of France", "en+f3", 175)]
    )  # fmt: skip
    return np.clip(np.round(audio * 32768), -32768, 32767).astype(np.int16)


def test_the_numpy_frontend_computes_tflite_micros_features(speech_and_noise, monkeypatch):
    """edge.wakeword.features against pymicro-features (the C code) on speech, clipped noise and a tone."""
    import ctypes
    import ctypes.util
    import math

    import edge.wakeword.features as features

    theirs = reference_features(speech_and_noise)
    ours = features.MicroFrontend().process(speech_and_noise)
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    # portable tables (correctly rounded cosf/log1pf): a few values one step (0.039) apart where glibc's are 1 ulp off
    steps = np.abs(ours - theirs) / features.FEATURE_SCALE
    assert steps.max() <= 1 and (steps > 0).mean() < 0.001
    libm = ctypes.util.find_library("m")
    if libm is None:
        return
    lib = ctypes.CDLL(libm)
    for name in ("cosf", "log1pf"):
        getattr(lib, name).restype, getattr(lib, name).argtypes = ctypes.c_float, [ctypes.c_float]
    table = {math.cos: lib.cosf, math.log1p: lib.log1pf}
    monkeypatch.setattr(features, "_f32_call", lambda function, x: np.float32(table[function](float(x))))
    for cached in (features._window, features._filterbank):
        cached.cache_clear()
    try:
        assert np.array_equal(features.MicroFrontend().process(speech_and_noise), theirs)  # bit for bit
    finally:
        monkeypatch.undo()
        for cached in (features._window, features._filterbank):
            cached.cache_clear()


@pytest.mark.parametrize("block", [1, 160, 333, 4096])
def test_the_frontend_streams_in_blocks_of_any_size(speech_and_noise, block):
    from edge.wakeword.features import MicroFrontend

    frontend, second = MicroFrontend(), speech_and_noise[:16000]
    pieces = [frontend.process(second[i : i + block]) for i in range(0, len(second), block)]
    whole = MicroFrontend().process(second)
    assert np.array_equal(np.concatenate(pieces), whole) and len(whole) == (16000 - 480) // 160 + 1


needs_export = pytest.mark.skipif(
    importlib.util.find_spec("tflite") is None or importlib.util.find_spec("onnx") is None,
    reason="converting needs the export extra (tflite, onnx)",
)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The four packaged models converted by `python -m export.wakeword` into a cache of their own."""
    from export.wakeword import main

    cache = tmp_path_factory.mktemp("wake-cache")
    assert main(["--out", str(cache / "wakewords")]) == 0
    return cache


@needs_export
def test_converted_wake_words_run_on_onnxruntime_alone(converted, monkeypatch):
    """With the conversion in the cache, the lean runtime needs neither pymicro-wakeword nor pymicro-features."""
    import sys

    from edge.wakeword import load_wake_word, wake_word_names

    monkeypatch.setenv("EDGE_CACHE_DIR", str(converted))
    for module in ("pymicro_wakeword", "pymicro_features", "micro_features_cpp"):
        monkeypatch.setitem(sys.modules, module, None)  # any import of them raises ImportError
    assert wake_word_names() == PACKAGED
    detector = load_wake_word("okay_nabu")
    assert detector.spec.runtime == "onnx" and detector.spec.model_path.parent == converted / "wakewords"
    audio = np.concatenate([silence(1.0), espeak("okay nabu"), silence(1.0), espeak("turn on the light"), silence(1)])
    assert len(detections(detector, audio)) == 1


@needs_export
def test_onnx_and_tflite_detectors_hear_the_same_phrases(converted, monkeypatch):
    from edge.wakeword import load_wake_word

    monkeypatch.setenv("EDGE_CACHE_DIR", str(converted))
    talk = [espeak("okay nabu"), espeak("okay then, turn it on"), espeak("okay nabu", "en-gb", 150)]
    audio = np.concatenate([np.concatenate([t, silence(1.2)]) for t in talk])
    onnx, tflite = load_wake_word("okay_nabu"), load_wake_word("okay_nabu", runtime="tflite")
    assert (onnx.spec.runtime, tflite.spec.runtime) == ("onnx", "tflite")
    heard = detections(onnx, audio)
    assert heard == detections(tflite, audio) and len(heard) == 2


@needs_export
def test_a_modified_converted_model_is_refused(converted, tmp_path, monkeypatch):
    import shutil as sh

    from edge.wakeword import load_wake_word

    sh.copytree(converted / "wakewords", tmp_path / "wakewords")
    monkeypatch.setenv("EDGE_CACHE_DIR", str(tmp_path))
    model = tmp_path / "wakewords" / "okay_nabu.onnx"
    model.write_bytes(model.read_bytes()[:-1] + b"x")
    with pytest.raises(EdgeError, match="checksum mismatch") as e:
        load_wake_word("okay_nabu")
    assert e.value.hint == "convert it again: python -m export.wakeword okay_nabu"


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
