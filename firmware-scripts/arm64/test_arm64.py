"""The runtime on aarch64: run by check-arm64.sh inside the emulated board, with the kit's venv.

Everything the board does with numbers is compared with what the x86 host computed for the same
tiny bundles (make_fixtures.py): each precision's logits (each takes other onnxruntime kernels),
greedy generation, the log-mel features, Silero VAD and the Whisper graphs; and a command set is
mapped through llguidance to commands that validate. The hands-free assistant runs over a short
session (the okay_nabu wake word on onnxruntime, Silero VAD, the tiny command model) and must wake
where the host woke. No torch here, as on a board.

EDGE_ARM64_FIXTURES names the fixtures folder; EDGE_ARM64_CPU the CPU QEMU emulates.
"""

from __future__ import annotations

import ctypes
import os
import platform
from pathlib import Path

import numpy as np
import pytest

import edge
from edge.commands.command_model import CommandModel
from edge.commands.command_set import CommandSet
from edge.speech.audio import load_audio, log_mel_spectrogram

FIXTURES = Path(os.environ.get("EDGE_ARM64_FIXTURES", Path(__file__).parent / "fixtures"))
PRECISIONS = ("fp32", "int8", "int8-weight", "int4")
# fp32 differs from the host by summation order only (measured: 7e-7 of the logits' spread). The
# quantized kernels round differently on each architecture (measured: 1-16% of the spread, and aarch64
# came out closer to fp32 than x86-64), so they are judged by what matters: at least about as close
# to the exact fp32 answer as the host's own kernels come. A broken kernel is off by the whole spread.
FP32_TOLERANCE = 1e-4
AS_ACCURATE = 1.5  # the board's error from fp32 may be at most this times the host's
AT_HWCAP = 16
HWCAP_ASIMDDP = 1 << 20  # the dot-product instructions a Cortex-A72 (Pi 4) lacks and an A76 (Pi 5) has


@pytest.fixture(scope="module")
def ref():
    return np.load(FIXTURES / "reference.npz")


def bundle(name: str) -> Path:
    return FIXTURES / "bundles" / name


def close(got: np.ndarray, want: np.ndarray) -> float:
    """Largest absolute difference relative to the reference's spread."""
    return float(np.max(np.abs(got - want)) / (np.ptp(want) or 1.0))


def assert_quantized_like_the_host(got: np.ndarray, host: np.ndarray, exact: np.ndarray) -> None:
    board, reference = close(got, exact), close(host, exact)
    limit = max(AS_ACCURATE * reference, FP32_TOLERANCE)
    assert board <= limit, f"off fp32 by {board:.4f} here, {reference:.4f} on x86"


def test_runs_on_aarch64_as_the_named_cpu():
    assert platform.machine() == "aarch64"
    cpu = os.environ.get("EDGE_ARM64_CPU")
    if cpu in ("cortex-a72", "cortex-a76"):
        libc = ctypes.CDLL(None)
        libc.getauxval.restype = ctypes.c_ulong
        has_dotprod = bool(libc.getauxval(AT_HWCAP) & HWCAP_ASIMDDP)
        assert has_dotprod == (cpu == "cortex-a76"), f"QEMU is not emulating a {cpu}"


def test_onnxruntime_runs_on_the_cpu_provider():
    import onnxruntime as ort

    assert "CPUExecutionProvider" in ort.get_available_providers()


@pytest.mark.parametrize("precision", PRECISIONS)
def test_text_logits_match_the_host(precision, ref):
    name = f"tiny-llama-{precision}"
    model = edge.load(bundle(name), threads=1)
    ids = ref[f"{name}/ids"].tolist()
    assert model.tokenizer.encode("Paris is the capital of") == ids
    got, host = model.decoder.forward(ids), ref[f"{name}/logits"]
    if precision == "fp32":
        assert close(got, host) < FP32_TOLERANCE
    else:
        assert_quantized_like_the_host(got, host, exact=ref["tiny-llama-fp32/logits"])


def test_greedy_generation_matches_the_host(ref):
    name = "tiny-llama-fp32"
    # the host's smallest top-2 gap on the way: far above fp32's differences, so no near-tie can flip
    assert float(ref[f"{name}/greedy_margin"]) > 100 * FP32_TOLERANCE
    model = edge.load(bundle(name), threads=1)
    ids = ref[f"{name}/ids"].tolist()
    tokens: list[int] = []
    logits = model.decoder.forward(ids)
    while len(tokens) < len(ref[f"{name}/greedy"]):
        tokens.append(int(np.argmax(logits)))
        logits = model.decoder.forward(tokens[-1:])
    assert tokens == ref[f"{name}/greedy"].tolist()


@pytest.mark.parametrize("precision", PRECISIONS)
def test_every_precision_streams_text(precision):
    model = edge.load(bundle(f"tiny-llama-{precision}"), threads=1)
    result = model.generate("Paris is", max_new_tokens=6, sampling=edge.SamplingOptions(temperature=0))
    assert result.stats.new_tokens >= 1 and result.stats.finish_reason in ("length", "stop")


def test_requests_become_valid_commands():
    panel = CommandSet.from_file(FIXTURES / "commands" / "tiny-panel.json")
    parser = CommandModel(edge.load(bundle("tiny-llama-int4"), threads=1), panel)
    for request in ("status report", "turn the kitchen light off", "", "ünïcödé 東京 🙂"):
        result = parser.parse(request)
        assert panel.validate(result.command) == result.command  # llguidance kept it inside the schema


def test_log_mel_matches_the_host(ref):
    audio = load_audio(FIXTURES / "audio" / "speech.wav")
    np.testing.assert_allclose(log_mel_spectrogram(audio), ref["audio/log_mel"], atol=1e-4)


def test_vad_matches_the_host(ref):
    speech = edge.load(bundle("tiny-whisper-int8"), threads=1)
    if speech.bundle.vad_path is None:
        pytest.skip("the speech bundle has no vad.onnx: silero-vad was not installed where it was exported")
    from edge.speech.vad import VoiceActivityDetector

    audio = load_audio(FIXTURES / "audio" / "speech.wav")
    vad = VoiceActivityDetector(speech.bundle.vad_path)
    np.testing.assert_allclose(vad.probabilities(audio), ref["vad/probabilities"], atol=1e-3)
    vad.reset()
    assert np.asarray(vad.speech_segments(audio)).tolist() == ref["vad/segments"].tolist()


def test_whisper_matches_the_host(ref):
    speech = edge.load(bundle("tiny-whisper-int8"), threads=1)
    audio = load_audio(FIXTURES / "audio" / "speech.wav")
    np.testing.assert_allclose(speech.features(audio), ref["whisper/features"], atol=1e-4)
    tokens = [5, 9, 13, 17]
    got = speech.teacher_forced_logits(audio, tokens)
    assert_quantized_like_the_host(got, ref["whisper/teacher_forced"], exact=ref["whisper/teacher_forced_fp32"])
    transcript = speech.transcribe(audio)
    assert transcript.audio_s == pytest.approx(len(audio) / 16000) and transcript.processing_s > 0


# --- the assistant over a short session -----------------------------------------------------------

SESSION_REQUEST = "turn on the kitchen light"  # what session.wav says after "okay nabu"
WAKE_TOLERANCE_S = 0.1  # a few of the wake-word model's 30 ms steps


class HeardRecognizer:
    """Stands in for Whisper (its graphs are checked above; the tiny random one would transcribe noise):
    'hears' the session's request, and counts what it was given."""

    def __init__(self):
        self.clips = 0

    def transcribe(self, audio):
        self.clips += 1
        return type("Heard", (), {"text": SESSION_REQUEST})()


def assistant_session(fixtures: Path) -> list[dict]:
    """The assistant's events over ``fixtures/audio/session.wav``, through its library API: the ONNX wake word
    (checksums verified), Silero VAD from the speech bundle, and the tiny int4 command model. Also run by
    make_fixtures.py on the host, for the reference."""
    from edge.assistant import Answerer, Assistant, file_blocks
    from edge.bundle import open_bundle
    from edge.speech.vad import VoiceActivityDetector
    from edge.wakeword import WakeWordDetector, WakeWordSpec

    spec = WakeWordSpec.from_sidecar(fixtures / "wakewords" / "okay_nabu.json")
    spec.verify()
    vad_path = open_bundle(fixtures / "bundles" / "tiny-whisper-int8").vad_path
    model = edge.load(fixtures / "bundles" / "tiny-llama-int4", threads=1)
    commands = CommandModel(model, CommandSet.from_file(fixtures / "commands" / "tiny-panel.json"))
    assistant = Assistant(
        WakeWordDetector(spec), VoiceActivityDetector(vad_path), HeardRecognizer(), commands, Answerer(model)
    )
    return [event.as_dict() for event in assistant.run(file_blocks(fixtures / "audio" / "session.wav"))]


def test_the_assistant_wakes_and_answers_a_short_session_as_on_the_host(ref):
    if "assistant/events" not in ref:
        pytest.skip("no assistant fixtures: the host lacked espeak-ng, a converted wake word or silero-vad")
    import json

    host = json.loads(str(ref["assistant/events"]))
    board = assistant_session(FIXTURES)
    assert [e["event"] for e in board] == [e["event"] for e in host] == ["wake", board[-1]["event"]], (board, host)
    assert board[-1]["event"] in ("command", "answer"), board
    for mine, theirs in zip(board, host, strict=True):
        assert abs(mine["t"] - theirs["t"]) <= WAKE_TOLERANCE_S, (board, host)
    if board[-1]["event"] == "command":
        panel = CommandSet.from_file(FIXTURES / "commands" / "tiny-panel.json")
        command = {"command": board[-1]["command"], "args": board[-1]["args"]}
        assert panel.validate(command) == command
