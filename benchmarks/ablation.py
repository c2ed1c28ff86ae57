"""What edge's exact int4 pays for: its own graph with one thing changed, timed side by side.

``python -m benchmarks ablation`` takes the int4 bundle's graph and builds variants of it:

  as exported          exact Q4_1 blocks, offsets added back by a small matmul per projection
  no offsets           the same codes without the offset nodes (not exact: speed only)
  integer zero points  each block's minimum rounded to a 4-bit zero point (what a plain export does)
  float zero points    exact, through MatMulNBits' float zero-point path
  4-bit output layer   the 8-bit Q8_0 output layer requantized to 4 bits
  calibrated ...       the exact weights requantized onto MatMulNBits' fast path (integer or no zero
                       points, no offset nodes) by export.calibrate, on activations of the fp32 graph
                       over data/calib_text.txt: see :data:`CALIBRATED`

Decode steps are timed in one process, interleaved in rounds so drift hits every variant alike
(10th percentile and median per step, 1 thread); top-1 agreement with the fp32 bundle (raw and
tie-aware) and the perplexity increase are measured on the export's own evaluation text, as the
quality gate does.
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


def _exact_weight(model: onnx.ModelProto, node: onnx.NodeProto) -> np.ndarray:
    """A 4-bit projection's exact Q4_1 weight, [k, n]: ``d * (q - 8) + offset`` per block."""
    packed = numpy_helper.to_array(_inits(model)[node.input[1]])
    codes = np.stack([packed & 15, packed >> 4], -1).reshape(*packed.shape[:2], -1).astype(np.float64)
    d, offsets = _offsets(model, node)
    return ((codes - 8) * d[..., None] + offsets[..., None]).reshape(len(codes), -1).T


def _head_weight(model: onnx.ModelProto, head: onnx.NodeProto) -> np.ndarray:
    """The 8-bit output layer's weight, [k, n]."""
    inits = _inits(model)
    codes = numpy_helper.to_array(inits[head.input[1]]).astype(np.float64)
    d = numpy_helper.to_array(inits[head.input[2]]).reshape(codes.shape[:2])
    return ((codes - 128) * d[..., None]).reshape(len(codes), -1).T


def _put(model: onnx.ModelProto, node: onnx.NodeProto, w: np.ndarray, hessian: np.ndarray, scheme) -> None:
    """Make ``node`` a 4-bit MatMulNBits holding ``w`` requantized by ``scheme`` (no offsets)."""
    from export import calibrate

    packed, d, z = calibrate.pack(*calibrate.requantize(w, hessian, scheme), scheme.symmetric)
    base = node.name + ".calibrated"
    _set(model, base + ".q4", packed)
    _set(model, base + ".scales", d)
    del node.input[1:]
    node.input.extend([base + ".q4", base + ".scales"])
    if z is not None:
        _set(model, base + ".zero_points", z)
        node.input.append(base + ".zero_points")
    for attr in node.attribute:
        if attr.name == "bits":
            attr.i = 4
        elif attr.name == "block_size":
            attr.i = scheme.block


def calibrated(model: onnx.ModelProto, hessians: dict[str, np.ndarray], scheme, head: bool = False) -> onnx.ModelProto:
    """The exact Q4_1 weights requantized onto MatMulNBits' fast path by ``scheme`` (export.calibrate),
    each projection's offsets dropped; ``head`` requantizes the 8-bit output layer to 4 bits too."""
    for node in _q4_nodes(model):
        _put(model, node, _exact_weight(model, node), hessians[node.name.removesuffix(".q4")], scheme)
    if head:
        node = next(n for n in model.graph.node if n.op_type == "MatMulNBits" and n.name.startswith("lm_head"))
        _put(model, node, _head_weight(model, node), hessians["lm_head"], scheme)
    model = drop_offsets(model)
    used = {i for n in model.graph.node for i in n.input}
    for init in [i for i in model.graph.initializer if i.name not in used]:
        model.graph.initializer.remove(init)
    return model


# (method, block, symmetric, 4-bit head), cheapest first; GPTQ takes about 4 minutes a variant on 2 busy cores
CALIBRATED = [
    ("search", 32, False, False),
    ("search", 32, False, True),
    ("search", 16, False, False),
    ("search", 32, True, False),
    ("gptq", 32, False, False),
]


def calibrated_variants(hessians: dict[str, np.ndarray]) -> dict[str, Callable[[onnx.ModelProto], onnx.ModelProto]]:
    """The calibrated layouts of :data:`CALIBRATED`, named for what they change."""
    from export.calibrate import Scheme

    out = {}
    for method, block, symmetric, head in CALIBRATED:
        scheme = Scheme(method, block, symmetric)
        name = f"{method}, block {block}, {'symmetric' if symmetric else 'integer zp'}{', 4-bit head' if head else ''}"
        out[name] = lambda m, s=scheme, h=head: calibrated(m, hessians, s, h)
    return out


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
    from edge.text.decoder import OnnxDecoder
    from edge.text.tokenizer import Tokenizer
    from export import calibrate, verify
    from export.graph import save_model

    bundle = open_bundle(int4)
    layout = bundle.manifest.kv_cache
    tokenizer = Tokenizer(bundle.tokenizer_path)
    ids = tokenizer.encode(verify.eval_text())[: bundle.manifest.context_length]
    print(f"fp32 reference over {len(ids)} tokens", file=sys.stderr)
    reference = verify.graph_logits(open_bundle(fp32).model_path, layout, ids, threads=1)
    ppl_fp32 = verify.perplexity(reference, ids[1:])
    chunks = calibrate.calib_chunks(calibrate.calib_text(), tokenizer.encode)
    print(f"calibration activations over {sum(map(len, chunks))} tokens of data/calib_text.txt", file=sys.stderr)
    hessians = calibrate.input_hessians(open_bundle(fp32).model_path, layout, chunks, threads=1)
    variants = {**VARIANTS, **calibrated_variants(hessians)}
    rows = []
    with tempfile.TemporaryDirectory() as work:
        paths = {}
        for i, (name, change) in enumerate(variants.items()):
            print(f"building: {name}", file=sys.stderr)
            paths[name] = Path(work) / str(i) / "model.onnx"
            paths[name].parent.mkdir()
            save_model(change(onnx.load(str(bundle.model_path))), paths[name])
        decoders = {name: OnnxDecoder(path, layout, threads=1) for name, path in paths.items()}
        print(f"timing {len(decoders)} variants, {rounds} interleaved rounds", file=sys.stderr)
        steps = time_steps(decoders, prompt, rounds)
        del decoders
        for name, path in paths.items():
            raw = tie_aware = increase = None
            if name != "float zero points":  # ~0.25 s a token: exact by construction, not re-measured
                print(f"agreement: {name}", file=sys.stderr)
                logits = verify.graph_logits(path, layout, ids, threads=1)
                raw, tie_aware = verify.agreement(logits, reference)
                increase = verify.perplexity(logits, ids[1:]) / ppl_fp32 - 1
            t = steps[name]
            rows.append(
                {
                    "variant": name,
                    "step_ms_p10": round(float(np.percentile(t, 10)), 2),
                    "step_ms_median": round(float(np.median(t)), 2),
                    "top1_agreement": None if raw is None else round(raw, 4),
                    "tie_aware_agreement": None if tie_aware is None else round(tie_aware, 4),
                    "ppl_increase": None if increase is None else round(increase, 4),
                    "passes_gate": None if raw is None else bool(tie_aware >= 0.95 and increase <= 0.03),
                    "eval_tokens": len(ids) - 1,
                    "calibration_tokens": sum(map(len, chunks)),
                }
            )
    return rows


def markdown(rows: list[dict], title: str) -> str:
    lines = [
        title,
        "",
        "| variant | step ms, p10 | step ms, median | top-1 agreement | tie-aware | ppl increase | gate |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["top1_agreement"] is None:
            quality = "exact by construction | | |"
        else:
            gate = "passes" if r["passes_gate"] else "fails"
            quality = f"{r['top1_agreement']:.1%} | {r['tie_aware_agreement']:.1%} | {r['ppl_increase']:+.2%} | {gate}"
        lines.append(f"| {r['variant']} | {r['step_ms_p10']:.2f} | {r['step_ms_median']:.2f} | {quality} |")
    return "\n".join(lines) + "\n"
