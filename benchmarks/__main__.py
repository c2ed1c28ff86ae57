"""``python -m benchmarks precisions``: every export precision of one model, side by side.

Each precision is exported once (kept in benchmarks/.bundles), then measured in fresh
processes, interleaved, several runs each; figures are medians. Quality figures come from
each bundle's report.json. Results: benchmarks/results/precisions.json and .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUNDLES = HERE / ".bundles"
RESULTS = HERE / "results"


def ensure_bundle(source: str, precision: str) -> Path:
    out = BUNDLES / f"{source}-{precision}"
    if not (out / "edge.json").is_file():
        from export import export_bundle

        print(f"exporting {source} at {precision} -> {out}", file=sys.stderr)
        export_bundle(source, out, precision, force=True)
    return out


def measure_once(bundle: Path, threads: int, tokens: int) -> dict:
    start = time.time()
    r = subprocess.run(
        [sys.executable, "-m", "benchmarks.worker", str(bundle), str(threads), str(tokens)],
        capture_output=True,
        text=True,
        cwd=HERE.parent,
        check=True,
    )
    row = json.loads(r.stdout.strip().splitlines()[-1])
    row["start_to_first_token_s"] = row.pop("first_token_wall") - start
    return row


def precisions(args) -> None:
    from edge.bundle import PRECISIONS

    bundles = {p: ensure_bundle(args.source, p) for p in PRECISIONS}
    samples: dict[tuple[str, int], list[dict]] = {}
    for run in range(args.runs):
        for threads in args.threads:
            for p in PRECISIONS:  # interleaved: drift on a noisy machine hits every row alike
                print(f"run {run + 1}/{args.runs}: {p} x{threads}", file=sys.stderr)
                samples.setdefault((p, threads), []).append(measure_once(bundles[p], threads, args.tokens))
    rows = []
    for (p, threads), runs in samples.items():
        report = json.loads((bundles[p] / "report.json").read_text())
        row = {"system": "edge", "precision": p, "threads": threads, "runs": len(runs)}
        for key in (
            "decode_tokens_per_s",
            "prompt_tokens_per_s",
            "ttft_s",
            "start_to_first_token_s",
            "load_s",
            "peak_rss_mb",
        ):
            row[key] = round(statistics.median(r[key] for r in runs), 3)
        row["size_mb"] = round(report["size_bytes"] / 1e6, 1)
        row["top1_agreement"] = report["top1_agreement"]
        row["perplexity_increase"] = report["perplexity_increase"]
        row["quality_gate"] = report["passed"]
        rows.append(row)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "precisions.json").write_text(json.dumps(rows, indent=2) + "\n")
    table = markdown(rows, args)
    (RESULTS / "precisions.md").write_text(table)
    print(table)


def markdown(rows: list[dict], args) -> str:
    head = (
        f"edge, {args.source}, {args.tokens} new tokens forced, greedy, medians of {args.runs} runs "
        "in fresh processes\n\n"
    )
    lines = [
        "| precision | threads | decode tok/s | prompt tok/s | TTFT s | start->1st token s | load s | "
        "peak RSS MB | size MB | top-1 agree | ppl increase | gate |",
        "|" + "---|" * 12,
    ]
    for r in rows:
        lines.append(
            f"| {r['precision']} | {r['threads']} | {r['decode_tokens_per_s']:.1f} | {r['prompt_tokens_per_s']:.0f} | "
            f"{r['ttft_s']:.3f} | {r['start_to_first_token_s']:.2f} | {r['load_s']:.2f} | {r['peak_rss_mb']:.0f} | "
            f"{r['size_mb']:.0f} | {r['top1_agreement']:.1%} | {r['perplexity_increase']:+.2%} | "
            f"{'pass' if r['quality_gate'] else 'FAIL'} |"
        )
    return head + "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("precisions", help="speed, memory and quality of each export precision")
    pr.add_argument("--source", default="smollm2-135m")
    pr.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    pr.add_argument("--runs", type=int, default=3)
    pr.add_argument("--tokens", type=int, default=128)
    pr.add_argument("--quick", action="store_true", help="1 thread, 3 runs, 32 tokens")
    args = p.parse_args()
    if args.quick:
        args.threads, args.tokens = [1], 32
    precisions(args)


if __name__ == "__main__":
    main()
