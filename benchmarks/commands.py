"""Voice-command benchmark: requests to commands, edge's constrained 135M model vs the nearest-example baseline.

Three systems: the base SmolLM2 bundle prompted with the command set (``edge``), the same model fine-tuned
for the set by ``edge-export specialise`` (``edge-specialised``, built into benchmarks/.bundles on first
use: about 20-30 minutes on 2 cores), and a TF-IDF nearest-example baseline. Each edge row also quotes its
bundle's perplexity on export's general English text (report.json), so the cost of specialising shows.

Each (system, precision, input) is one fresh process (``python -m benchmarks.commands_worker``) at 1 thread that
loads once, warms up on one request made from the command set (never from the dataset), then times every
utterance. Inputs: the dataset's text, and with ``--audio`` the same utterances spoken by Piper and espeak-ng
(synthesized and cached by ``benchmarks.asr``) and transcribed by the whisper-tiny.en int8 bundle. The dataset
only measures: nothing in the prompt, the examples or the baseline comes from it.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.commands_worker import BASELINE, FREE_NUMBERS, HEARD, SPECIALISED
from benchmarks.common import HERE, RESULTS, ensure_bundle, interleave, write
from edge.bundle import MANIFEST, REPORT_FILE, read_manifest
from edge.commands.command_model import examples, speech_prompt
from edge.commands.command_set import CommandSet, InvalidCommand

ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "commands"
DATASET = SHARED / "appliance-panel.dev.jsonl"
COMMAND_SET = SHARED / "appliance-panel.json"
# command sets with hand-written dev requests beside them (NAME.json + NAME.dev.jsonl): the shared
# reference set, and sets of other domains written for this benchmark
SET_FOLDERS = (SHARED, HERE / "commands")
VOICES = ("piper", "espeak")
# "+vocab": the recognizer first reads the set's own words (edge.commands.command_model.speech_prompt)
VOCAB = "+vocab"
INPUTS = ("text", *(f"audio-{v}{p}" for v in VOICES for p in ("", VOCAB)))
NO_PRECISION = "-"  # the baseline has no model
TARGETS = (
    "validity 100%; text accuracy >= 90% (default bundle); audio accuracy >= 85%; median text -> command <= 150 ms. "
    "Specialised: text accuracy >= 97%, audio >= 92%, median latency no worse than the base bundle"
)
SHOWN_FAILURES = 12


def command_sets() -> dict[str, tuple[Path, Path]]:
    """{name: (command set, dev requests)} for every set that has its dev requests beside it."""
    found = {}
    for folder in SET_FOLDERS:
        for dev in sorted(folder.glob("*.dev.jsonl")):
            path = dev.with_name(dev.name.removesuffix(".dev.jsonl") + ".json")
            if path.is_file():
                found[path.stem] = (path, dev)
    return found


def results_name(cs: CommandSet) -> str:
    """results/commands.* for the reference set (as before), results/commands-NAME.* for the others."""
    return "commands" if Path(cs.path or "").resolve() == COMMAND_SET.resolve() else f"commands-{cs.name}"


def load_dataset(path: Path) -> list[dict]:
    """The dataset's lines: ``{"text": ..., "expected": {"command": ..., "args": {...}}}``."""
    if not path.is_file():
        sys.exit(f"{path} not found: pass --dataset (the default is the shared dev set beside the repository)")
    # failures are reported by line number: the utterances are for measuring and stay out of the repo
    lines = path.read_text().splitlines()
    return [json.loads(text) | {"line": n} for n, text in enumerate(lines, 1) if text.strip()]


def warmup_text(cs: CommandSet, texts: list[str]) -> str:
    """A request from the command set's own examples that the dataset does not hold."""
    return next(request for request, _ in examples(cs) if request not in texts)


def audio_inputs(cs: CommandSet, texts: list[str], warmup: str, chosen: list[int]) -> dict[str, tuple[list[str], str]]:
    """{input: (the chosen clips, the warm-up clip)} for every voice that can be synthesized here.

    The reference set's clips are the ASR benchmark's (``.audio/VOICE``); every other set has its own
    folder (``.audio/NAME/VOICE``), since clips are cached by line number."""
    from benchmarks.asr import _missing_tools, synthesize

    out = {}
    for voice in VOICES:
        if why := _missing_tools(voice):
            print(f"voice not run: {voice}: {why}", file=sys.stderr)
            continue
        # the dataset keeps its indices, so the reference set shares the ASR benchmark's cache
        paths = synthesize(voice, texts + [warmup], None if results_name(cs) == "commands" else cs.name)
        clips = ([str(paths[i]) for i in chosen], str(paths[-1]))
        out[f"audio-{voice}"] = out[f"audio-{voice}{VOCAB}"] = clips
    return out


def ensure_specialised(cs: CommandSet, precision: str, speech_model: str | None = None) -> Path:
    """The specialised bundle for ``cs`` at ``precision`` with the default recipe (also trained on
    ``speech_model``'s transcripts when given), built when missing or made with another set or recipe."""
    from dataclasses import asdict

    from benchmarks.common import BUNDLES, SOURCE
    from export.specialise import Specialisation

    out = BUNDLES / f"{cs.name}-specialised{'-heard' if speech_model else ''}-{precision}"
    specialisation = Specialisation(cs.path, speech_model=speech_model)
    info = read_manifest(out).commands if (out / MANIFEST).is_file() else None
    if info is None or info.sha256 != cs.sha256 or info.training.get("recipe") != asdict(specialisation.recipe):
        from export import export_bundle

        print(f"specialising {SOURCE} for {cs.name} at {precision} -> {out}", file=sys.stderr)
        export_bundle(SOURCE, out, precision, force=True, specialisation=specialisation)
    return out


def bundle_figures(bundle: str | None) -> dict:
    """Perplexity on export's general English text, and the training record of a specialised bundle."""
    if bundle is None:
        return {}
    report = json.loads((Path(bundle) / REPORT_FILE).read_text())
    out = {"perplexity_general_text": round(report["perplexity"], 3)}
    info = read_manifest(Path(bundle)).commands
    if info is not None:
        out["train_seconds"] = info.training.get("train_seconds")
        out["generated_validation_accuracy"] = info.training.get("validation_accuracy")
    return out


def measure(spec: dict) -> dict:
    """One fresh worker process; its JSON line."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "benchmarks.commands_worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _valid(cs: CommandSet, command: dict | None) -> bool:
    try:
        return command is not None and cs.validate(command) is command
    except InvalidCommand:
        return False


def _same(a: dict | None, b: dict) -> bool:
    """Equal commands, types included (``true`` is not ``1``)."""
    return a is not None and json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def summarize(key: tuple, out: dict, data: list[dict], cs: CommandSet, dataset: Path, bundle: str | None) -> dict:
    """One result row from a worker's per-utterance results."""
    system, precision, input_ = key
    results = out["results"]
    exact = [_same(r["command"], d["expected"]) for d, r in zip(data, results, strict=True)]
    same_command = [
        bool(r["command"]) and r["command"]["command"] == d["expected"]["command"]
        for d, r in zip(data, results, strict=True)
    ]
    totals = [r["transcribe_s"] + r["parse_s"] for r in results]
    confusion: dict[str, Counter] = {}
    failures = []
    for item, r, ok in zip(data, results, exact, strict=True):
        expected, got = item["expected"], r["command"]
        predicted = got["command"] if got else "(error)"
        confusion.setdefault(expected["command"], Counter())[predicted] += 1
        if not ok:
            failure = {"line": item["line"], "expected": expected, "got": got or r.get("error")}
            if input_ != "text":
                failure["transcript"] = r["transcript"]
            failures.append(failure)
    n = len(results)
    row = {
        "system": system,
        "precision": precision,
        "input": input_,
        "accuracy": round(sum(exact) / n, 4),
        "command_accuracy": round(sum(same_command) / n, 4),
        "validity": round(sum(_valid(cs, r["command"]) for r in results) / n, 4),
        "median_latency_s": round(statistics.median(totals), 5),
        "p95_latency_s": round(float(np.percentile(totals, 95)), 5),
        "mean_model_calls": round(statistics.mean(r["model_calls"] for r in results), 2),
        "n": n,
        "load_s": round(out["load_s"], 2),
        "peak_rss_mb": round(out["peak_rss_mb"]),
        "dataset": dataset.name,
        "command_set": cs.name,
        **bundle_figures(bundle),
    }
    if input_ != "text":
        row["median_transcribe_s"] = round(statistics.median(r["transcribe_s"] for r in results), 5)
        row["median_parse_s"] = round(statistics.median(r["parse_s"] for r in results), 5)
    return {**row, "confusion": {k: dict(v) for k, v in confusion.items()}, "failures": failures}


def merged(rows: list[dict], name: str) -> list[dict]:
    """These rows, plus rows of an earlier run on the same utterances and set that this run did not measure."""
    path = RESULTS / f"{name}.json"
    old = json.loads(path.read_text()) if path.is_file() else []
    keys = {(r["system"], r["precision"], r["input"]) for r in rows}
    first = rows[0] if rows else {}
    kept = [
        r
        for r in old
        if (r["system"], r["precision"], r["input"]) not in keys
        and all(r.get(k) == first.get(k) for k in ("dataset", "command_set", "n"))
    ]
    order = ["edge", SPECIALISED, HEARD, BASELINE]

    def key(r: dict) -> tuple:
        system = r["system"].removesuffix(FREE_NUMBERS)
        return INPUTS.index(r["input"]), order.index(system), r["precision"], r["system"] != system

    return sorted(rows + kept, key=key)


def _pct(x: float) -> str:
    return f"{x:.1%}"


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds * 1000:.1f}" if seconds >= 0.001 else f"{seconds * 1000:.2f}"


def confusion_table(row: dict, names: list[str]) -> list[str]:
    """Expected commands down, predicted across; blank for zero."""
    predicted = names + sorted({p for c in row["confusion"].values() for p in c} - set(names))
    lines = ["| expected \\ predicted | " + " | ".join(predicted) + " |", "|" + "---|" * (len(predicted) + 1)]
    for e in names:
        counts = row["confusion"].get(e, {})
        if counts:
            lines.append(f"| {e} | " + " | ".join(str(counts.get(p, "")) for p in predicted) + " |")
    return lines


def failure_lines(row: dict, limit: int) -> list[str]:
    lines = []
    for f in row["failures"][:limit]:
        heard = f" (heard {f['transcript']!r})" if "transcript" in f else ""
        lines.append(f"- line {f['line']}{heard}: expected `{json.dumps(f['expected'])}`, got `{json.dumps(f['got'])}`")
    if len(row["failures"]) > limit:
        lines.append(f"- ... {len(row['failures']) - limit} more in commands.json")
    return lines


def markdown(rows: list[dict], cs: CommandSet, dataset: Path, default: str) -> str:
    lines = [
        f"Voice commands: {dataset.name}, command set {cs.name}; 1 thread, one fresh process per row (loaded once, "
        "one warm-up request from the set's own examples). Latency: wall time from text (or audio) to command.",
        "",
        f"Targets: {TARGETS}.",
        "",
        "| system | precision | input | accuracy | command accuracy | validity | median latency ms | p95 latency ms | "
        "transcribe ms | parse ms | model calls | n | perplexity, general text |",
        "|" + "---|" * 13,
    ]
    for r in rows:
        ppl = r.get("perplexity_general_text")
        lines.append(
            f"| {r['system']} | {r['precision']} | {r['input']} | {_pct(r['accuracy'])} | "
            f"{_pct(r['command_accuracy'])} | {_pct(r['validity'])} | {_ms(r['median_latency_s'])} | "
            f"{_ms(r['p95_latency_s'])} | {_ms(r.get('median_transcribe_s'))} | "
            f"{_ms(r.get('median_parse_s', r['median_latency_s']))} | {r['mean_model_calls']:.1f} | {r['n']} | "
            f"{'' if ppl is None else f'{ppl:.2f}'} |"
        )
    lines += [
        "",
        "Model calls: decoder calls per request (the request's prefill, then one per real choice). Perplexity: the "
        "bundle's own on export's fixed English text (report.json), lower is better; it shows what specialising "
        "cost the model outside its commands.",
    ]
    for r in rows:
        if r["system"] in (SPECIALISED, HEARD) and r["input"] == "text" and r.get("train_seconds"):
            lines += [
                "",
                f"{r['system']} {r['precision']}: fine-tuned in {r['train_seconds']:.0f} s; "
                f"{_pct(r['generated_validation_accuracy'])} exact on its generated held-out requests.",
            ]
    names = list(cs.commands)
    for r in rows:
        if r["system"] in ("edge", SPECIALISED, HEARD) and r["input"] == "text" and r["precision"] == default:
            name = f"{r['system']} {default}"
            lines += ["", f"## Confusion: {name}, text (commands only)", "", *confusion_table(r, names)]
            lines += ["", f"## Failures: {name}, text", "", *failure_lines(r, SHOWN_FAILURES)]
    for r in rows:
        if r["system"] in ("edge", SPECIALISED, HEARD) and r["input"] != "text":
            lines += ["", f"## Failures: {r['system']} {r['precision']}, {r['input']}", "", *failure_lines(r, 6)]
    return "\n".join(lines) + "\n"


def run(args) -> None:
    """``python -m benchmarks commands``: every set (or ``--sets``, or one ``--commands``/``--dataset`` pair)."""
    if args.dataset or args.commands:
        pairs = [(Path(args.commands or COMMAND_SET), Path(args.dataset or DATASET))]
    else:
        known = command_sets()
        unknown_names = set(args.sets or []) - set(known)
        if unknown_names:
            sys.exit(f"no command set named {', '.join(sorted(unknown_names))}: choose from {', '.join(known)}")
        pairs = [known[name] for name in (args.sets or known)]
    for commands_path, dataset in pairs:
        run_set(CommandSet.from_file(commands_path), dataset.resolve(), args)


def run_set(cs: CommandSet, dataset: Path, args) -> None:
    """Measure one command set on its dev requests, then write results/commands[-NAME].{json,md}."""
    from edge.cache import DEFAULT_PRECISION

    data = load_dataset(dataset)
    texts = [d["text"] for d in data]
    chosen = list(range(0, len(data), 3))[:20] if args.quick else list(range(len(data)))
    warmup = warmup_text(cs, texts)
    inputs = {"text": ([texts[i] for i in chosen], warmup)}
    if args.audio:
        inputs |= audio_inputs(cs, texts, warmup, chosen)
    precisions = list(dict.fromkeys(args.precision or [DEFAULT_PRECISION, "int4"]))
    bundles = {("edge", p): str(ensure_bundle(p)) for p in precisions}
    speech = None
    if args.audio or args.heard:
        from benchmarks.asr import ensure_bundle as speech_bundle

        speech = str(speech_bundle("int8"))
    if not args.no_specialised:
        bundles |= {(SPECIALISED, p): str(ensure_specialised(cs, p)) for p in precisions}
    if args.heard:
        bundles |= {(HEARD, p): str(ensure_specialised(cs, p, speech)) for p in precisions}
    if args.free_numbers:  # the same bundles, decoding any command and any number in range (values.py off)
        bundles |= {(system + FREE_NUMBERS, p): b for (system, p), b in bundles.items()}
    keys = [(s, p, i) for i in inputs for s, p in [*bundles, (BASELINE, NO_PRECISION)]]

    def spec(key: tuple) -> dict:
        system, precision, input_ = key
        items, warm = inputs[input_]
        return {
            "system": system,
            "bundle": bundles.get((system, precision)),
            "ground_numbers": not system.endswith(FREE_NUMBERS),
            "commands": cs.path,
            "asr": speech if input_ != "text" else None,
            "asr_prompt": speech_prompt(cs) if input_.endswith(VOCAB) else None,
            "inputs": items,
            "warmup": warm,
        }

    samples, _ = interleave(keys, 1, lambda k: measure(spec(k)))
    subset = [data[i] for i in chosen]
    name = results_name(cs)
    rows = merged([summarize(k, s[0], subset, cs, dataset, bundles.get(k[:2])) for k, s in samples.items()], name)
    write(name, rows, args, markdown(rows, cs, dataset, DEFAULT_PRECISION))
