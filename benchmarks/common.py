"""What every benchmark shares: where bundles and results go, the default bundle, interleaved runs, medians, tables.

Its own module so that the benchmark modules (asr, commands, server, soak) and the command line
(``benchmarks/__main__.py``, which dispatches to them) do not import each other.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUNDLES = HERE / ".bundles"
RESULTS = HERE / "results"
SOURCE = "smollm2-135m"
PROMPT = (
    "You are the voice of a kitchen appliance panel. Explain in a few sentences how an oven "
    "thermostat keeps the temperature steady while bread bakes."
)
FIELDS = ("decode_tokens_per_s", "prompt_tokens_per_s", "ttft_s", "start_to_first_token_s", "load_s", "peak_rss_mb")


def ensure_bundle(precision: str, source: str = SOURCE) -> Path:
    """The edge bundle of ``source`` (an edge-export alias) at ``precision``, exported on first use."""
    out = BUNDLES / f"{source}-{precision}"
    if not (out / "edge.json").is_file():
        from export import export_bundle

        print(f"exporting {source} at {precision} -> {out}", file=sys.stderr)
        export_bundle(source, out, precision, force=True)
    return out


def interleave(keys: list[tuple], runs: int, measure: Callable[[tuple], dict], rotate: bool = False):
    """Measure every key once per run, one pass over all keys per run; a key that fails is dropped.

    ``rotate`` starts each run one key later, so no system always runs first. Returns
    ({key: [sample, ...]}, {key: why it failed}).
    """
    samples: dict[tuple, list[dict]] = {}
    failed: dict[tuple, str] = {}
    for run in range(runs):
        shift = run % len(keys) if rotate and keys else 0
        for key in keys[shift:] + keys[:shift]:
            if key in failed:
                continue
            print(f"run {run + 1}/{runs}: {' '.join(map(str, key))}", file=sys.stderr)
            try:
                sample = measure(key)
            except RuntimeError as e:
                failed[key] = str(e)
                print(f"  could not run: {e}", file=sys.stderr)
                continue
            samples.setdefault(key, []).append(sample)
    for key, why in failed.items():
        print(f"not measured: {' '.join(map(str, key))}: {why}", file=sys.stderr)
    return samples, failed


def medians(runs: list[dict], fields: tuple[str, ...]) -> dict:
    """The median of each field over runs, rounded to 3 decimals."""
    return {k: round(statistics.median(r[k] for r in runs), 3) for k in fields}


def _size(artifact: Path) -> int:
    """Bytes of model weights on disk: the file itself, or the weight files in a folder."""
    artifact = Path(artifact)
    if artifact.is_file():
        return artifact.stat().st_size
    return sum(
        p.stat().st_size
        for p in artifact.rglob("*")
        if p.is_file() and p.suffix in (".onnx", ".ort", ".data", ".safetensors", ".bin")  # .onnx.data ends in .data
    )


def markdown(rows: list[dict], title: str) -> str:
    lines = [
        title,
        "",
        "| system | precision | threads | decode tok/s | prompt tok/s | TTFT s | start->1st token s | "
        "load s | peak RSS MB | size MB | top-1 agree (tie-aware) | ppl increase |",
        "|" + "---|" * 12,
    ]
    for r in rows:
        agree = f"{r['top1_agreement']:.1%}" if "top1_agreement" in r else ""
        if r.get("tie_aware_agreement") is not None:
            agree += f" ({r['tie_aware_agreement']:.1%})"
        ppl = f"{r['perplexity_increase']:+.2%}" if "perplexity_increase" in r else ""
        lines.append(
            f"| {r['system']} | {r['precision']} | {r['threads']} | {r['decode_tokens_per_s']:.1f} | "
            f"{r['prompt_tokens_per_s']:.0f} | {r['ttft_s']:.3f} | {r['start_to_first_token_s']:.2f} | "
            f"{r['load_s']:.2f} | {r['peak_rss_mb']:.0f} | {r['size_mb']:.0f} | {agree} | {ppl} |"
        )
    return "\n".join(lines) + "\n"


def write(name: str, rows: list[dict], args, table: str | None = None) -> None:
    """Write results/NAME.json (the rows) and results/NAME.md (``table``, by default the text-generation one)."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(rows, indent=2) + "\n")
    if table is None:
        title = (
            f"{SOURCE}, {args.tokens} new tokens forced, greedy, medians of {args.runs} fresh-process runs, "
            f"prompt {args.prompt_tokens} tokens"
        )
        table = markdown(rows, title)
    (RESULTS / f"{name}.md").write_text(table)
    print(table)
