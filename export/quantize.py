"""Quantizing the fp32 graph to the bundle's precision."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from edge.bundle import PRECISIONS

from . import blockgrid
from .graph import save_model
from .progress import Ticker

PRECISION_HELP = {
    "fp32": "no quantization (reference; largest and slowest)",
    "int8": "dynamic int8: int8 weights and activations (MatMulInteger)",
    "int8-weight": "8-bit weights in blocks of 32 (MatMulNBits); embedding and lm_head one 8-bit table",
    "int4": "4-bit weights in blocks of 32, Q4_1 kept exact; embedding and lm_head one 8-bit table",
    "fp16": "16-bit float weights, activations and KV cache: for a GPU (--provider cuda); slow on a CPU",
}
BLOCK_SIZE = 32


def quantize(
    fp32_path: Path,
    out_path: Path,
    precision: str,
    per_channel: bool = False,
    eight_bit_from_layer: int | None = None,
    progress: Callable[[int], Ticker] | None = None,
    source_grid: bool = False,
) -> None:
    """Write ``fp32_path`` quantized to ``precision`` as ``out_path``, weights in ``<out_path>.data``.

    ``per_channel`` gives int8 one scale per output channel instead of one per tensor: better for
    Whisper (dev WER 14.4 -> 13.3% Piper, 27.7 -> 24.9% espeak-ng), broken for SmolLM2 (12.6%
    top-1 agreement against 77.8% per tensor), so each export path chooses.

    ``eight_bit_from_layer`` keeps int4's matmuls at 8 bits from that decoder layer up: a fine-tune
    moves those layers' weights by less than a 4-bit step, and 4 bits would round the change away.

    ``source_grid`` (the weights come from a quantized GGUF): int4 keeps at 4 bits only the matmuls
    whose blocks already lie on 16 levels (Q4_0, Q4_1, Q4_K), exactly, and the others (Q5_0, Q6_K,
    Q8_0, float) at 8 bits rather than round them to 4 a second time.

    ``progress(total)`` gives a ticker that counts the graph's nodes as int4 and int8-weight pack them.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    # the quantizers log every node at INFO and advise pre-processing on the root logger
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        _quantize(fp32_path, out_path, precision, per_channel, eight_bit_from_layer, progress, source_grid)
    finally:
        root.setLevel(level)


def _quantize(
    fp32_path: Path,
    out_path: Path,
    precision: str,
    per_channel: bool,
    eight_bit_from: int | None,
    progress: Callable[[int], Ticker] | None,
    source_grid: bool = False,
) -> None:
    if precision == "fp32":
        save_model(onnx.load(str(fp32_path)), out_path)
    elif precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        # inputs and outputs too (the KV cache is written in place, so it must be the graph's own type)
        save_model(convert_float_to_float16(onnx.load(str(fp32_path)), disable_shape_infer=True), out_path)
    elif precision == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        single = out_path.with_name(out_path.name + ".single")
        quantize_dynamic(
            str(fp32_path),
            str(single),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            per_channel=per_channel,
            # contrib ops (GroupQueryAttention, ...) defeat shape inference; all activations are float
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": True},
        )
        save_model(onnx.load(str(single)), out_path)
        single.unlink()
    else:
        bits = 4 if precision == "int4" else 8
        model = onnx.load(str(fp32_path))
        ticker = progress(len(model.graph.node)) if progress else None
        packed = pack_blockwise(model, bits, eight_bit_from=eight_bit_from, ticker=ticker, source_grid=source_grid)
        save_model(packed, out_path)


def _layer(node_name: str) -> int | None:
    """``layers.12.mlp.down_proj`` -> 12; None for nodes outside the decoder layers."""
    parts = node_name.split(".")
    return int(parts[1]) if len(parts) > 1 and parts[0] == "layers" and parts[1].isdigit() else None


def _blocks(w: np.ndarray) -> np.ndarray:
    """A [k, n] weight as [n, k / 32, 32] blocks along k, MatMulNBits' layout."""
    k, n = w.shape
    return w.T.reshape(n, k // BLOCK_SIZE, BLOCK_SIZE).astype(np.float64)


def _affine(blocks: np.ndarray, low: np.ndarray, high: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes 0..levels and scales that put each block's [low, high] on evenly spaced steps."""
    d = (high - low) / levels
    d[d == 0] = 1.0
    return np.clip(np.rint((blocks - low[..., None]) / d[..., None]), 0, levels).astype(np.uint8), d


def _q4_exact(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """4-bit codes, scales and per-block offsets with ``w = d * (q - 8) + offset`` exactly.

    MatMulNBits stores ``w = d * (q - zero_point)`` with an integer zero point, which cannot hold
    a Q4_1 block's float minimum: rounding it shifts the whole block, and on weights that were
    already Q4_1 that shift is most of the error (73% top-1 agreement on SmolLM2). So the kernel
    runs without zero points (its fastest path, implied 8) and the rest of each block's offset,
    ``min + 8 * d``, is added back as ``block_sums(x) @ offsets``, a matmul 32 times smaller.
    """
    low = blocks.min(-1)
    # the top of the block's 16 levels: its max for Q4_1, past it where Q4_0's or Q4_K's codes stop short
    q, d = _affine(blocks, low, blockgrid.four_bit_high(blocks), 15)
    return q[..., 0::2] | (q[..., 1::2] << 4), d, (low + 8 * d).T


def _q8_asymmetric(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """8-bit codes, scales and zero points, zero inside each block's range."""
    low = np.minimum(blocks.min(-1), 0)
    q, d = _affine(blocks, low, np.maximum(blocks.max(-1), 0), 255)
    return q, d, np.clip(np.rint(-low / d), 0, 255).astype(np.uint8)


def _q8_symmetric(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-bit codes around 128 with ``d = max|w| / 127``: exact for GGUF Q8_0 tensors."""
    d = np.abs(blocks).max(-1) / 127
    d[d == 0] = 1.0
    return (np.rint(blocks / d[..., None]) + 128).astype(np.uint8), d


def pack_blockwise(
    model: onnx.ModelProto,
    bits: int,
    eight_bit_from: int | None = None,
    ticker: Ticker | None = None,
    source_grid: bool = False,
) -> onnx.ModelProto:
    """Every MatMul with a constant weight becomes MatMulNBits with blocks of 32 along k.

    ``bits=4``: each block keeps ``w = d * q + min`` exactly (the GGUF Q4_1 scheme, see
    :func:`_q4_exact`); with ``source_grid``, matmuls not already on 4-bit grids get 8 bits.
    ``bits=8``: asymmetric 8-bit blocks. ``eight_bit_from`` keeps the
    decoder layers from that one up at 8 bits: a fine-tune moves those layers' weights by less
    than a 4-bit step, and 4 bits would round the change away.

    ``lm_head`` is 8-bit symmetric (exact for a Q8_0 output layer; 4 bits cost SmolLM2 22 points
    of top-1 agreement). When the embedding is the same matrix, it reads the same 8-bit table
    through GatherBlockQuantized instead of keeping a float copy: 113 MB less for SmolLM2.

    All matmuls run with accuracy_level 4 (int8 activations inside the kernel), the fast path on
    x86 and arm64; the fp32-activation path measured 3x slower for 4 bits and 40x for 8.
    """
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    nodes: list[onnx.NodeProto] = []
    added: list[onnx.TensorProto] = []
    head: tuple[np.ndarray, str, np.ndarray] | None = None  # (fp32 weight, its codes, their scales)

    def constant(array: np.ndarray, name: str) -> str:
        added.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    for node in model.graph.node if ticker is None else ticker.over(model.graph.node):
        weight = inits.get(node.input[1]) if node.op_type == "MatMul" else None
        w = numpy_helper.to_array(weight) if weight is not None else None
        if w is None or w.ndim != 2 or w.shape[0] % BLOCK_SIZE:
            nodes.append(node)
            continue
        (k, n), base, x = w.shape, node.input[1], node.input[0]
        blocks = _blocks(w)
        layer = _layer(node.name)
        offsets, extra = None, []
        if node.name in ("lm_head", "/lm_head/MatMul"):  # edge's graph, optimum's
            codes, d = _q8_symmetric(blocks)
            head, node_bits = (w, f"{base}.q8", d), 8
        elif (
            bits == 4
            and not (eight_bit_from is not None and layer is not None and layer >= eight_bit_from)
            and not (source_grid and not blockgrid.is_four_bit(blocks))  # a 5-8 bit source stays 8-bit
        ):
            codes, d, offsets = _q4_exact(blocks)
            node_bits = 4
        else:
            codes, d, z = _q8_asymmetric(blocks)
            node_bits, extra = 8, [constant(z.reshape(-1), f"{base}.zero_points")]
        scales = constant(d.astype(np.float32).reshape(-1), f"{base}.scales")
        inputs = [x, constant(codes, f"{base}.q{node_bits}"), scales, *extra]
        out = node.output[0] if offsets is None else f"{node.name}/nbits"
        nodes.append(
            helper.make_node(
                "MatMulNBits",
                inputs,
                [out],
                name=f"{node.name}.q{node_bits}",
                domain="com.microsoft",
                K=k,
                N=n,
                bits=node_bits,
                block_size=BLOCK_SIZE,
                accuracy_level=4,
            )
        )
        if offsets is not None:
            sums = f"{node.name}/block_sums"
            shape = constant(np.array([0, 0, k // BLOCK_SIZE, BLOCK_SIZE], np.int64), f"{base}.block_shape")
            nodes += [
                helper.make_node("Reshape", [x, shape], [f"{sums}/blocks"], name=f"{sums}/blocks"),
                helper.make_node(
                    "ReduceSum",
                    [f"{sums}/blocks", constant(np.array([-1], np.int64), f"{base}.last_axis")],
                    [sums],
                    name=sums,
                    keepdims=0,
                ),
                helper.make_node(
                    "MatMul",
                    [sums, constant(offsets.astype(np.float32), f"{base}.block_offsets")],
                    [f"{node.name}/offsets"],
                    name=f"{node.name}/offsets",
                ),
                helper.make_node("Add", [out, f"{node.name}/offsets"], [node.output[0]], name=f"{node.name}.add"),
            ]
    if head is not None:
        nodes = _share_head_with_embedding(nodes, inits, head, constant)
    model.graph.initializer.extend(added)
    used = {i for n in nodes for i in n.input}  # float weights nothing reads now: packed, or a shared embedding
    for init in [i for i in model.graph.initializer if i.name not in used and i.name in inits]:
        model.graph.initializer.remove(init)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def _share_head_with_embedding(
    nodes: list[onnx.NodeProto],
    inits: dict[str, onnx.TensorProto],
    head: tuple[np.ndarray, str, np.ndarray],
    constant: Callable[[np.ndarray, str], str],
) -> list[onnx.NodeProto]:
    """Point a tied embedding's Gather at lm_head's 8-bit table (GatherBlockQuantized, exact rows)."""
    from onnx import helper, numpy_helper

    weight, codes, scales = head
    out = []
    for node in nodes:
        table = inits.get(node.input[0]) if node.op_type == "Gather" else None
        if (
            table is None
            or tuple(table.dims) != weight.T.shape
            or not np.array_equal(numpy_helper.to_array(table), weight.T)
        ):
            out.append(node)
            continue
        vocab, hidden = weight.T.shape
        scales_3d = constant(scales.astype(np.float32).reshape(vocab, -1, 1), f"{codes}.row_scales")
        rows = f"{node.name}/rows"
        out += [
            helper.make_node(
                "GatherBlockQuantized",
                [codes, node.input[1], scales_3d],
                [rows],
                name=node.name,
                domain="com.microsoft",
                bits=8,
                block_size=BLOCK_SIZE,
                gather_axis=0,
                quantize_axis=2,
            ),
            helper.make_node(
                "Reshape",
                [rows, constant(np.array([0, 0, hidden], np.int64), f"{node.name}.shape")],
                [node.output[0]],
            ),
        ]
    return out
