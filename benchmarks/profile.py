"""Where a decode step's time goes: onnxruntime's own profiler on edge and onnxruntime-genai.

``python -m benchmarks profile`` runs each bundle in a fresh process with profiling on (same prompt
ids, greedy, 128 forced tokens, 1 thread), then sums every kernel's time per decode step by role:
the matmuls of the decoder layers, the output layer, edge's Q4_1 offset correction (the block sums
and their small matmul and add), attention, norms, the rest. The profiler adds a few microseconds
to every node, so small nodes look dearer than they are: compare the columns, and take wall-clock
speed from ``python -m benchmarks decode``.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import time
from pathlib import Path

ROLES = ("decoder matmuls", "output layer", "Q4_1 offsets", "attention", "norms", "other")


def role(op: str, node: str) -> str:
    """The part of the model a profiled node belongs to, from its op type and name."""
    if op in ("MatMulNBits", "MatMul") and "lm_head" in node:
        return "output layer"
    if "/block_sums" in node or "/offsets" in node or node.endswith(".add"):
        return "Q4_1 offsets"
    if op == "MatMulNBits":
        return "decoder matmuls"
    if op == "GroupQueryAttention":
        return "attention"
    if "LayerNormalization" in op:
        return "norms"
    return "other"


def summarize(trace: list[dict], prompt_runs: int = 1) -> dict:
    """Per decode step: microseconds per role and nodes run (the prefill run is left out)."""
    runs = [e for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run"]
    if len(runs) <= prompt_runs:
        raise RuntimeError("the profile holds no decode steps")
    decode_from = runs[prompt_runs]["ts"]
    per_role: collections.Counter[str] = collections.Counter()
    nodes = 0
    for e in trace:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time") or e["ts"] < decode_from:
            continue
        per_role[role(e["args"]["op_name"], e["name"].removesuffix("_kernel_time"))] += e["dur"]
        nodes += 1
    steps = len(runs) - prompt_runs
    return {
        "steps": steps,
        "nodes_per_step": round(nodes / steps),
        "kernel_us_per_step": round(sum(per_role.values()) / steps),
        **{f"{r} us": round(per_role[r] / steps) for r in ROLES},
    }


def profile_edge(bundle: str, ids: list[int], tokens: int, prefix: str) -> str:
    import edge.text.decoder
    from edge.bundle import open_bundle
    from edge.text.generate import generate
    from edge.text.sampling import Sampler, SamplingOptions

    options = edge.text.decoder.session_options

    def profiled(threads, prepack=True):
        so = options(threads, prepack)
        so.enable_profiling, so.profile_file_prefix = True, prefix
        return so

    edge.text.decoder.session_options = profiled
    b = open_bundle(Path(bundle))
    prepack = b.manifest.precision != "fp32"
    decoder = edge.text.decoder.OnnxDecoder(b.model_path, b.manifest.kv_cache, threads=1, prepack=prepack)
    greedy = Sampler(SamplingOptions(temperature=0))
    for _ in generate(decoder, ids, greedy, tokens, set(), b.manifest.context_length):
        pass
    return decoder.session.end_profiling()


def profile_genai(folder: str, ids: list[int], tokens: int, prefix: str) -> str:
    from benchmarks.peers import genai_greedy, genai_model

    model = genai_model(folder, 1, enable_profiling=prefix)
    for _ in genai_greedy(model, ids, tokens):
        pass
    del model  # genai writes the trace when its session closes
    return ""


def main() -> None:
    """Worker: ``python -m benchmarks.profile SYSTEM ARTIFACT TOKENS IDS PREFIX``; prints the trace's path."""
    system, artifact, tokens, ids, prefix = sys.argv[1:6]
    ids = [int(i) for i in ids.split(",")]
    run = profile_edge if system == "edge" else profile_genai
    print(run(artifact, ids, int(tokens), prefix))


def measure(system: str, artifact: Path, tokens: int, ids: list[int], workdir: Path) -> dict:
    """Profile one system in a fresh process and summarize its trace."""
    prefix = str(workdir / f"{system}-{artifact.name}-{time.time_ns()}")
    worker = [sys.executable, "-m", "benchmarks.profile", system, str(artifact), str(tokens)]
    cmd = [*worker, ",".join(map(str, ids)), prefix]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}")
    traces = sorted(workdir.glob(Path(prefix).name + "*.json"))
    if not traces:
        raise RuntimeError(f"{system}: no profile written under {prefix}")
    return summarize(json.loads(traces[-1].read_text()))


def markdown(rows: list[dict], title: str) -> str:
    head = ["system", "precision", "nodes/step", "kernel us/step", *(f"{r} us" for r in ROLES)]
    lines = [title, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["system"], r["precision"], r["nodes_per_step"], r["kernel_us_per_step"]]
        cells += [r[f"{x} us"] for x in ROLES]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
