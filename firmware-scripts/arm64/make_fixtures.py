"""Build, on the host, what the aarch64 run needs: tiny bundles and the host's answers to compare with.

    python firmware-scripts/arm64/make_fixtures.py OUT

The board has no torch, so bundles are exported here, from the same tiny random models the test
suite builds (tests/conftest.py), and the host computes reference results with the same runtime
code. test_arm64.py then checks that aarch64 gets the same numbers within a tolerance:

    OUT/bundles/tiny-llama-{fp32,int8,int8-weight,int4}/   one per precision: each takes other kernels
    OUT/bundles/tiny-whisper-int8/                         with vad.onnx when silero-vad is installed
    OUT/commands/tiny-panel.json                           a command set with a `status` command
    OUT/audio/speech.wav                                   the exporter's spoken check clip
    OUT/audio/session.wav, OUT/wakewords/okay_nabu.*       "okay nabu, turn on the kitchen light" (espeak-ng)
                                                           and the wake word on ONNX, for the assistant
    OUT/reference.npz                                      the host's logits (fp32 too), log-mel, VAD, tokens,
                                                           the assistant's events
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

PRECISIONS = ("fp32", "int8", "int8-weight", "int4")
PROMPT = "Paris is the capital of"
GREEDY_TOKENS = 8
WHISPER_TOKENS = [5, 9, 13, 17]  # teacher-forced after the start ids
PANEL = {
    "name": "tiny-panel",
    "description": "A tiny test panel: a light, a timer and a status report.",
    "commands": {
        "status": {"description": "Report what the appliances are doing right now.", "args": {}},
        "set_light": {
            "description": "Switch the lights in one room on or off.",
            "args": {"room": {"enum": ["kitchen", "hallway"]}, "on": {"type": "boolean"}},
        },
        "start_timer": {
            "description": "Start a kitchen timer for a number of minutes.",
            "args": {"minutes": {"type": "integer", "minimum": 1, "maximum": 180}},
        },
        "unknown": {"description": "The request is not one of the commands above.", "args": {}},
    },
}


def text_reference(bundle: Path, ref: dict[str, np.ndarray]) -> None:
    import edge

    model = edge.load(bundle, threads=1)
    ids = model.tokenizer.encode(PROMPT)
    logits = model.decoder.forward(ids)
    tokens, margins = [], []
    while len(tokens) < GREEDY_TOKENS:
        top2 = np.sort(logits)[-2:]
        margins.append(top2[1] - top2[0])
        tokens.append(int(np.argmax(logits)))
        logits = model.decoder.forward(tokens[-1:])
    name = bundle.name
    ref[f"{name}/ids"] = np.asarray(ids)
    model.decoder.rewind(0)
    ref[f"{name}/logits"] = model.decoder.forward(ids)
    ref[f"{name}/greedy"] = np.asarray(tokens)
    ref[f"{name}/greedy_margin"] = np.asarray(min(margins))


def speech_reference(bundle: Path, fp32: Path, wav: Path, ref: dict[str, np.ndarray]) -> None:
    import edge
    from edge.speech.audio import load_audio, log_mel_spectrogram
    from edge.speech.vad import VoiceActivityDetector

    audio = load_audio(wav)
    recognizer = edge.load(bundle, threads=1)
    ref["audio/log_mel"] = log_mel_spectrogram(audio)
    ref["whisper/features"] = recognizer.features(audio)
    ref["whisper/teacher_forced"] = recognizer.teacher_forced_logits(audio, WHISPER_TOKENS)
    ref["whisper/teacher_forced_fp32"] = edge.load(fp32, threads=1).teacher_forced_logits(audio, WHISPER_TOKENS)
    if recognizer.bundle.vad_path is not None:
        vad = VoiceActivityDetector(recognizer.bundle.vad_path)
        ref["vad/probabilities"] = vad.probabilities(audio)
        vad.reset()
        ref["vad/segments"] = np.asarray(vad.speech_segments(audio))


def assistant_reference(out: Path, ref: dict[str, np.ndarray]) -> str:
    """A short assistant session and the host's events over it; says what is missing when it cannot."""
    from tests.test_audio import write_pcm

    if "vad/probabilities" not in ref:
        return "no VAD"
    if shutil.which("espeak-ng") is None:
        return "no espeak-ng"
    from edge.wakeword import wake_word_spec

    try:  # the ONNX conversion (python -m export.wakeword), made here when there is none yet
        spec = wake_word_spec("okay_nabu", runtime="onnx")
    except Exception:
        from export.wakeword import main as convert

        if convert(["okay_nabu"]) != 0:
            return "okay_nabu could not be converted to ONNX (pip install 'edge[assistant]')"
        spec = wake_word_spec("okay_nabu", runtime="onnx")
    (out / "wakewords").mkdir()
    for name in (spec.model_path.with_suffix(".json").name, *spec.files):
        shutil.copy(spec.model_path.parent / name, out / "wakewords" / name)
    from benchmarks.assistant import espeak, silence

    session = [silence(0.5), espeak("okay nabu"), silence(0.4), espeak("turn on the kitchen light"), silence(2.0)]
    write_pcm(out / "audio" / "session.wav", np.concatenate(session))
    sys.path.insert(0, str(Path(__file__).parent))
    from test_arm64 import assistant_session

    events = assistant_session(out)
    ref["assistant/events"] = np.asarray(json.dumps(events))
    return f"the assistant: {[e['event'] for e in events]}"


def main(out: Path) -> None:
    from export import export_bundle
    from tests.conftest import make_hf_folder, make_whisper_folder

    if out.exists():
        shutil.rmtree(out)
    (out / "bundles").mkdir(parents=True)
    quiet = lambda _: None  # noqa: E731
    llama = make_hf_folder(out / "hf-llama", "llama")
    for precision in PRECISIONS:
        export_bundle(str(llama), out / "bundles" / f"tiny-llama-{precision}", precision, progress=quiet)
    whisper = make_whisper_folder(out / "hf-whisper")
    export_bundle(str(whisper), out / "bundles" / "tiny-whisper-int8", "int8", progress=quiet)
    # the fp32 graphs only give the host's exact answer, to judge the int8 ones by: not shipped
    export_bundle(str(whisper), out / "whisper-fp32", "fp32", progress=quiet)

    (out / "commands").mkdir()
    (out / "commands" / "tiny-panel.json").write_text(json.dumps(PANEL, indent=2) + "\n")
    (out / "audio").mkdir()
    shutil.copy(REPO / "export" / "data" / "speech_check.wav", out / "audio" / "speech.wav")

    ref: dict[str, np.ndarray] = {}
    for precision in PRECISIONS:
        text_reference(out / "bundles" / f"tiny-llama-{precision}", ref)
    speech_reference(out / "bundles" / "tiny-whisper-int8", out / "whisper-fp32", out / "audio" / "speech.wav", ref)
    assistant = assistant_reference(out, ref)
    np.savez(out / "reference.npz", **ref)
    for scratch in ("hf-llama", "hf-whisper", "whisper-fp32"):
        shutil.rmtree(out / scratch)
    vad = "with" if "vad/probabilities" in ref else "without (pip install --no-deps silero-vad)"
    print(f"fixtures in {out}: {len(PRECISIONS)} text bundles, a speech bundle {vad} VAD, {assistant}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_fixtures.py OUT")
    main(Path(sys.argv[1]))
