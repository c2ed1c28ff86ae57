"""What edge's exact int4 pays for: its own graph with one thing changed, timed side by side.

``python -m benchmarks ablation`` takes the int4 bundle's graph and builds variants of it:

  as exported          exact Q4_1 blocks, offsets added back by a small matmul per projection
  no offsets           the same codes without the offset nodes (not exact: speed only)
  integer zero points  each block's minimum rounded to a 4-bit zero point (what a plain export does)
  float zero points    exact, through MatMulNBits' float zero-point path
  4-bit output layer   the 8-bit Q8_0 output layer requantized to 4 bits

Decode steps are timed in one process, interleaved in rounds so drift hits every variant alike
(10th percentile and median per step, 1 thread), and top-1 agreement with the fp32 bundle is
measured on the export's own evaluation text, as the quality gate does.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

BLOCK = 32


def _inits(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {i.name: i for i in model.graph.initializer}


def _set(model: onnx.ModelProto, name: str, array: np.ndarray) -> None:
    inits = _inits(model)
    if name in inits:
        inits[name].CopyFrom(numpy_helper.from_array(array, name))
    else:
        model.graph.initializer.append(numpy_helper.from_array(array, name))


def _q4_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == "MatMulNBits" and n.output[0].endswith("/nbits")]


def _offsets(model: onnx.ModelProto, node: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray]:
    """A 4-bit projection's scales and block offsets, both [n, k / 32]."""
    inits = _inits(model)
    offsets = numpy_helper.to_array(inits[node.input[1].removesuffix(".q4") + ".block_offsets"]).T
    return numpy_helper.to_array(inits[node.input[2]]).reshape(offsets.shape), offsets


def drop_offsets(model: onnx.ModelProto) -> onnx.ModelProto:
    """Remove the block-sum correction: each 4-bit matmul writes its projection's output directly."""
    final = {n.input[0]: n.output[0] for n in model.graph.node if n.name.endswith(".add")}
    keep = []
    for node in model.graph.node:
        if "/block_sums" in node.name or node.name.endswith(("/offsets", ".add")):
            continue
        if node.output[0] in final:
            node.output[0] = final[node.output[0]]
        keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    return model


def zero_points(model: onnx.ModelProto, integer: bool) -> onnx.ModelProto:
    """Fold each block's offset into a zero point ``8 - offset / d``: rounded to 4 bits, or float (exact)."""
    for node in _q4_nodes(model):
        d, offsets = _offsets(model, node)
        z = 8 - offsets / d
        name = node.input[1] + ".zero_points"
        if integer:
            z = np.clip(np.rint(z), 0, 15).astype(np.uint8)
            z = np.pad(z, ((0, 0), (0, z.shape[1] % 2)))
            _set(model, name, (z[:, 0::2] | (z[:, 1::2] << 4)).reshape(-1))
        else:
            _set(model, name, z.astype(np.float32).reshape(-1))
        node.input.append(name)
    return drop_offsets(model)


def four_bit_head(model: onnx.ModelProto) -> onnx.ModelProto:
    """The output layer's 8-bit table requantized to plain asymmetric 4-bit blocks."""
    from export.quantize import _affine

    head = next(n for n in model.graph.node if n.op_type == "MatMulNBits" and n.name.startswith("lm_head"))
    inits = _inits(model)
    codes = numpy_helper.to_array(inits[head.input[1]]).astype(np.float64)
    rows = (codes - 128) * numpy_helper.to_array(inits[head.input[2]]).reshape(codes.shape[:2])[..., None]
    low = rows.min(-1)
    q, d = _affine(rows, low, rows.max(-1), 15)
    z = np.clip(np.rint(-low / d), 0, 15).astype(np.uint8)
    z = np.pad(z, ((0, 0), (0, z.shape[1] % 2)))
    names = ["lm_head.ablation.q4", "lm_head.ablation.scales", "lm_head.ablation.zero_points"]
    _set(model, names[0], q[..., 0::2] | (q[..., 1::2] << 4))
    _set(model, names[1], d.astype(np.float32).reshape(-1))
    _set(model, names[2], (z[:, 0::2] | (z[:, 1::2] << 4)).reshape(-1))
    del head.input[1:]
    head.input.extend(names)
    next(a for a in head.attribute if a.name == "bits").i = 4
    return model


VARIANTS: dict[str, Callable[[onnx.ModelProto], onnx.ModelProto]] = {
    "as exported": lambda m: m,
    "no offsets": drop_offsets,
    "integer zero points": lambda m: zero_points(m, integer=True),
    "float zero points": lambda m: zero_points(m, integer=False),
    "4-bit output layer": four_bit_head,
}


def time_steps(decoders: dict, prompt: list[int], rounds: int, per_round: int = 8) -> dict[str, np.ndarray]:
    """Decode-step wall times per variant, in interleaved rounds from the same prompt."""
    times: dict[str, list[float]] = {name: [] for name in decoders}
    for decoder in decoders.values():
        decoder.forward(prompt)
    for _ in range(rounds):
        for name, decoder in decoders.items():
            decoder.rewind(len(prompt))
            token = prompt[-1]
            for _ in range(per_round):
                start = time.perf_counter()
                token = int(decoder.forward([token]).argmax())
                times[name].append(time.perf_counter() - start)
    return {name: np.array(t) * 1000 for name, t in times.items()}


def run(int4: Path, fp32: Path, prompt: list[int], rounds: int = 20) -> list[dict]:
    from edge.bundle import open_bundle
    from edge.decoder import OnnxDecoder
    from edge.tokenizer import Tokenizer
    from export import verify
    from export.graph import save_model

    bundle = open_bundle(int4)
    layout = bundle.manifest.kv_cache
    ids = Tokenizer(bundle.tokenizer_path).encode(verify.eval_text())[: bundle.manifest.context_length]
    print(f"fp32 reference over {len(ids)} tokens", file=sys.stderr)
    reference = verify.graph_logits(open_bundle(fp32).model_path, layout, ids, threads=1).argmax(-1)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        paths = {}
        for i, (name, change) in enumerate(VARIANTS.items()):
            paths[name] = Path(work) / str(i) / "model.onnx"
            paths[name].parent.mkdir()
            save_model(change(onnx.load(str(bundle.model_path))), paths[name])
        decoders = {name: OnnxDecoder(path, layout, threads=1) for name, path in paths.items()}
        print(f"timing {len(decoders)} variants, {rounds} interleaved rounds", file=sys.stderr)
        steps = time_steps(decoders, prompt, rounds)
        for name, path in paths.items():
            if name == "float zero points":  # ~0.25 s a token: exact by construction, not re-measured
                agreement = None
            else:
                print(f"agreement: {name}", file=sys.stderr)
                logits = verify.graph_logits(path, layout, ids, threads=1)
                agreement = round(float((logits.argmax(-1) == reference).mean()), 4)
            t = steps[name]
            rows.append(
                {
                    "variant": name,
                    "step_ms_p10": round(float(np.percentile(t, 10)), 2),
                    "step_ms_median": round(float(np.median(t)), 2),
                    "top1_agreement": agreement,
                    "eval_tokens": len(ids) - 1,
                }
            )
    return rows


def markdown(rows: list[dict], title: str) -> str:
    lines = [title, "", "| variant | step ms, p10 | step ms, median | top-1 agreement |", "|---|---|---|---|"]
    for r in rows:
        agreement = "exact by construction" if r["top1_agreement"] is None else f"{r['top1_agreement']:.1%}"
        lines.append(f"| {r['variant']} | {r['step_ms_p10']:.2f} | {r['step_ms_median']:.2f} | {agreement} |")
    return "\n".join(lines) + "\n"
