"""Quantizing the fp32 graph to the bundle's precision."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx

from edge.bundle import PRECISIONS

from .graph import save_model

PRECISION_HELP = {
    "fp32": "no quantization (reference; largest and slowest)",
    "int8": "dynamic int8: int8 weights and activations (MatMulInteger)",
    "int8-weight": "8-bit weights in blocks of 32 (MatMulNBits, int8 compute)",
    "int4": "4-bit weights, blocks of 32 with a float minimum (Q4_1-style) on MatMulNBits; lm_head 8-bit",
}
BLOCK_SIZE = 32


def quantize(
    fp32_path: Path, out_path: Path, precision: str, per_channel: bool = False, eight_bit_from_layer: int | None = None
) -> None:
    """Write ``fp32_path`` quantized to ``precision`` as ``out_path``, weights in ``<out_path>.data``.

    ``per_channel`` gives int8 one scale per output channel instead of one per tensor: better for
    Whisper (dev WER 14.4 -> 13.3% Piper, 27.7 -> 24.9% espeak-ng), broken for SmolLM2 (12.6%
    top-1 agreement against 77.8% per tensor), so each export path chooses.

    ``eight_bit_from_layer`` keeps int4's matmuls at 8 bits from that decoder layer up: a fine-tune
    moves those layers' weights by less than a 4-bit step, and 4 bits would round the change away.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    # the quantizers log every node at INFO and advise pre-processing on the root logger
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        _quantize(fp32_path, out_path, precision, per_channel, eight_bit_from_layer)
    finally:
        root.setLevel(level)


def _quantize(fp32_path: Path, out_path: Path, precision: str, per_channel: bool, eight_bit_from: int | None) -> None:
    if precision == "fp32":
        save_model(onnx.load(str(fp32_path)), out_path)
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
    elif precision == "int4":
        save_model(_q4_min_offset(onnx.load(str(fp32_path)), eight_bit_from=eight_bit_from), out_path)
    else:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        bits = 8
        # accuracy_level 4: int8 activations inside the kernel, the fast path on x86 and arm64
        q = MatMulNBitsQuantizer(
            onnx.load(str(fp32_path)), bits=bits, block_size=BLOCK_SIZE, is_symmetric=False, accuracy_level=4
        )
        q.process()
        save_model(q.model.model, out_path)


def _layer(node_name: str) -> int | None:
    """``layers.12.mlp.down_proj`` -> 12; None for nodes outside the decoder layers."""
    parts = node_name.split(".")
    return int(parts[1]) if len(parts) > 1 and parts[0] == "layers" and parts[1].isdigit() else None


def _q4_min_offset(
    model: onnx.ModelProto, head_bits: int | None = 8, eight_bit_from: int | None = None
) -> onnx.ModelProto:
    """4-bit weights with a float minimum per block (the GGUF Q4_1 scheme), on MatMulNBits.

    MatMulNBits stores ``w = scale * (q - zero_point)`` with an integer zero point, which cannot
    hold a block's exact minimum: rounding it shifts the whole block, and on weights that were
    already Q4_1 that shift is most of the error. So each block keeps ``w = d * q + min`` exactly:
    MatMulNBits computes ``d * (q - z)`` with ``z`` the nearest integer to ``-min / d``, and the
    leftover ``min + z * d`` per block is added back as ``block_sums(x) @ R``, a matmul
    32 times smaller than the layer. Recovered Q4_1 weights come out bit-exact.

    ``lm_head`` is kept at 8 bits, as llama.cpp keeps its output layer above 4 bits.
    """
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    nodes: list[onnx.NodeProto] = []
    added: list[onnx.TensorProto] = []
    for node in model.graph.node:
        weight = inits.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is None:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weight)
        k, n = w.shape
        if k % BLOCK_SIZE or (node.name == "lm_head" and head_bits is None):
            nodes.append(node)
            continue
        layer = _layer(node.name)
        tuned = eight_bit_from is not None and layer is not None and layer >= eight_bit_from
        bits = head_bits if node.name == "lm_head" else 8 if tuned else 4
        levels = 2**bits - 1
        blocks = w.T.reshape(n, k // BLOCK_SIZE, BLOCK_SIZE).astype(np.float64)
        low, high = blocks.min(-1), blocks.max(-1)
        if bits == 8:  # plain asymmetric blocks, zero inside the range
            low, high = np.minimum(low, 0), np.maximum(high, 0)
        d = (high - low) / levels
        d[d == 0] = 1.0
        q = np.clip(np.rint((blocks - low[..., None]) / d[..., None]), 0, levels).astype(np.uint8)
        z = np.clip(np.rint(-low / d), 0, levels).astype(np.uint8)
        base = node.input[1]
        if bits == 4:
            packed = q[..., 0::2] | (q[..., 1::2] << 4)
            zp = z if z.shape[1] % 2 == 0 else np.pad(z, ((0, 0), (0, 1)))
            zp = zp[:, 0::2] | (zp[:, 1::2] << 4)
        else:
            packed, zp = q, z
            q = q.astype(np.float64) - z[..., None]  # exact: zero is inside the 8-bit range
        added += [
            numpy_helper.from_array(packed, f"{base}.q{bits}"),
            numpy_helper.from_array(d.astype(np.float32).reshape(-1), f"{base}.scales"),
            numpy_helper.from_array(zp.reshape(-1), f"{base}.zero_points"),
        ]
        main = node.output[0] if bits == 8 else f"{node.name}/nbits"
        nodes.append(
            helper.make_node(
                "MatMulNBits",
                [node.input[0], f"{base}.q{bits}", f"{base}.scales", f"{base}.zero_points"],
                [main],
                name=f"{node.name}.q{bits}",
                domain="com.microsoft",
                K=k,
                N=n,
                bits=bits,
                block_size=BLOCK_SIZE,
                accuracy_level=4,
            )
        )
        if bits == 4:
            residual = (low + z * d).T.astype(np.float32)  # [k / 32, n]
            shape = np.array([0, 0, k // BLOCK_SIZE, BLOCK_SIZE], np.int64)
            added += [
                numpy_helper.from_array(shape, f"{base}.block_shape"),
                numpy_helper.from_array(np.array([-1], np.int64), f"{base}.last_axis"),
                numpy_helper.from_array(residual, f"{base}.block_offsets"),
            ]
            sums = f"{node.name}/block_sums"
            nodes += [
                helper.make_node("Reshape", [node.input[0], f"{base}.block_shape"], [f"{sums}/blocks"]),
                helper.make_node("ReduceSum", [f"{sums}/blocks", f"{base}.last_axis"], [sums], keepdims=0),
                helper.make_node("MatMul", [sums, f"{base}.block_offsets"], [f"{node.name}/offsets"]),
                helper.make_node("Add", [main, f"{node.name}/offsets"], [node.output[0]], name=f"{node.name}.add"),
            ]
        model.graph.initializer.remove(weight)
    model.graph.initializer.extend(added)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model
