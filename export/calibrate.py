"""Calibrated 4-bit requantization: blocks MatMulNBits runs on its fast path, chosen on real activations.

The exact int4 keeps the packaged Q4_1 blocks (``w = d * q + min``) and pays for each block's float
minimum with extra nodes. MatMulNBits' fast path holds ``w = d * (q - z)`` with ``z`` an integer
(or 8, symmetric). Rounding each weight to that grid on its own loses 23 points of agreement on
SmolLM2; here the grid is chosen to keep each layer's *output* close on calibration text instead:

  ``search``  per block, the scale and zero point that minimise ``sum_j H_jj (w_j - w'_j)^2``, the
              output error weighted by each input's mean square on the calibration text
  ``gptq``    the same choice per block, then GPTQ: weights are rounded one input at a time and each
              rounding error is pushed onto the inputs not yet rounded through ``H^-1``, so the
              layer's output on the calibration activations moves as little as possible

``H = X^T X / T`` comes from the fp32 graph (the Q4_1 model's own dequantized weights) run over
``data/calib_text.txt``, prose written for this and distinct from the quality gate's evaluation text.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from edge.bundle import KVCacheLayout

METHODS = ("search", "gptq")
# fraction of H's mean diagonal added to it: keeps H invertible when a few inputs barely vary
DAMP = 0.01


@dataclass(frozen=True)
class Scheme:
    """A calibrated 4-bit layout: method, block size along k, and integer zero points or symmetric."""

    method: str = "gptq"
    block: int = 32
    symmetric: bool = False

    def __str__(self) -> str:
        return f"{self.method}, block {self.block}, {'symmetric' if self.symmetric else 'integer zero points'}"


def calib_text() -> str:
    return resources.files("export").joinpath("data/calib_text.txt").read_text(encoding="utf-8")


def calib_chunks(text: str, encode, max_tokens: int = 256) -> list[list[int]]:
    """The calibration text as token chunks, one per paragraph, each cut at ``max_tokens``."""
    chunks = [encode(p.strip())[:max_tokens] for p in text.split("\n\n") if p.strip()]
    return [c for c in chunks if len(c) > 1]


def _matmul_inputs(model: onnx.ModelProto) -> dict[str, str]:
    """MatMul name -> the activation it reads, for MatMuls with a constant 2-D weight.

    ``lm_head`` reads only the last position; its input is taken before that slice so every
    calibration token counts.
    """
    consts = {i.name: i for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    out = {}
    for node in model.graph.node:
        w = consts.get(node.input[1]) if node.op_type == "MatMul" else None
        if w is None or len(w.dims) != 2:
            continue
        x = node.input[0]
        if x in producer and producer[x].op_type == "Slice":
            x = producer[x].input[0]
        out[node.name] = x
    return out


def input_hessians(
    fp32_path: Path, layout: KVCacheLayout, chunks: list[list[int]], threads: int | None = None
) -> dict[str, np.ndarray]:
    """MatMul name -> ``X^T X / T`` of its input over the calibration chunks, from the fp32 graph.

    The graph is run with each MatMul input added as an output; the weights are not copied: the
    temporary model sits beside the original and hard-links its external data file (onnxruntime
    refuses data outside the model's folder, symbolic links included).
    """
    from edge.text.decoder import OnnxDecoder

    model = onnx.load(str(fp32_path), load_external_data=False)
    inputs = _matmul_inputs(model)
    names = sorted(set(inputs.values()))
    model.graph.output.extend(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)
    sums = {n: 0.0 for n in names}
    count = 0
    with tempfile.TemporaryDirectory(dir=fp32_path.parent.parent, prefix=".calibrate-") as work:
        path = Path(work) / fp32_path.name
        onnx.save(model, str(path))
        for data in fp32_path.parent.glob(fp32_path.name + ".*"):
            try:
                os.link(data, Path(work) / data.name)
            except OSError:  # another file system
                shutil.copyfile(data, Path(work) / data.name)
        decoder = OnnxDecoder(path, layout, threads=threads)
        order = [o.name for o in decoder.session.get_outputs()]
        for chunk in chunks:
            for name in names:  # bound afresh: an output once allocated keeps its shape
                decoder._binding.bind_output(name, "cpu")
            decoder.rewind(0)
            decoder.forward(chunk)
            values = dict(zip(order, decoder._binding.get_outputs(), strict=True))
            for name in names:
                x = values[name].numpy().reshape(-1, values[name].shape()[-1]).astype(np.float64)
                sums[name] = sums[name] + x.T @ x
            count += len(chunk)
    return {mm: sums[x] / count for mm, x in inputs.items()}


# ---------------------------------------------------------------- the 4-bit grid of one block


def _grid_params(w: np.ndarray, h: np.ndarray, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``w`` [n, B]: the scale and integer zero point of the 16-level grid with the least
    ``sum_j h_j (w_j - w'_j)^2``, searched around the min/max (or max |w|) fit."""
    if symmetric:
        amax = np.abs(w).max(-1)
        candidates = [amax / c for c in np.linspace(6.0, 9.0, 25)]
        zs = [np.full(len(w), 8.0)] * len(candidates)
    else:
        lo, hi = w.min(-1), w.max(-1)
        candidates, zs = [], []
        for f in np.linspace(0.8, 1.15, 15):
            d = (hi - lo) * f / 15
            d = np.where(d == 0, 1.0, d)
            centre = -(lo + hi) / 2 / d + 7.5  # the zero point that centres the grid on the block
            for z in (np.floor(centre), np.ceil(centre), np.rint(-lo / d)):
                candidates.append(d)
                zs.append(np.clip(z, 0, 15))
    d = np.stack(candidates)[..., None]  # [c, n, 1]
    z = np.stack(zs)[..., None]
    d = np.where(d == 0, 1.0, d)
    q = np.clip(np.rint(w / d + z), 0, 15)
    err = (((q - z) * d - w) ** 2 * h).sum(-1)  # [c, n]
    best = err.argmin(0)
    rows = np.arange(len(w))
    return d[best, rows, 0], z[best, rows, 0]


def requantize(w_in_out: np.ndarray, hessian: np.ndarray, scheme: Scheme) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A [k, n] weight as 4-bit codes [n, k/B, B] (0..15), scales [n, k/B] and zero points [n, k/B]."""
    k, n = w_in_out.shape
    b = scheme.block
    w = w_in_out.T.astype(np.float64).copy()
    h = hessian.astype(np.float64).copy()
    diag = np.diag(h).copy()
    dead = diag == 0
    h[dead, dead] = 1.0
    diag[dead] = 1.0
    codes = np.zeros((n, k), np.uint8)
    scales = np.zeros((n, k // b))
    zeros = np.zeros((n, k // b))
    if scheme.method == "gptq":
        h[np.diag_indices(k)] += DAMP * diag.mean()
        upper = np.linalg.cholesky(np.linalg.inv(h)).T  # H^-1 = U^T U
    for j in range(k // b):
        i1, i2 = j * b, (j + 1) * b
        block = w[:, i1:i2]
        d, z = _grid_params(block, diag[i1:i2], scheme.symmetric)
        scales[:, j], zeros[:, j] = d, z
        if scheme.method != "gptq":
            codes[:, i1:i2] = np.clip(np.rint(block / d[:, None] + z[:, None]), 0, 15)
            continue
        errors = np.zeros((n, b))
        u = upper[i1:i2, i1:i2]
        for i in range(b):
            col = block[:, i]
            q = np.clip(np.rint(col / d + z), 0, 15)
            codes[:, i1 + i] = q
            err = (col - (q - z) * d) / u[i, i]
            block[:, i:] -= np.outer(err, u[i, i:])
            errors[:, i] = err
        w[:, i2:] -= errors @ upper[i1:i2, i2:]
    return codes.reshape(n, k // b, b), scales, zeros.astype(np.uint8)


def pack(codes: np.ndarray, scales: np.ndarray, zeros: np.ndarray, symmetric: bool):
    """MatMulNBits' inputs: packed codes, float32 scales, packed zero points (None when symmetric)."""
    packed = codes[..., 0::2] | (codes[..., 1::2] << 4)
    if symmetric:
        return packed, scales.astype(np.float32).reshape(-1), None
    z = np.pad(zeros, ((0, 0), (0, zeros.shape[1] % 2)))
    return packed, scales.astype(np.float32).reshape(-1), (z[:, 0::2] | (z[:, 1::2] << 4)).reshape(-1)


def dequantize(codes: np.ndarray, scales: np.ndarray, zeros: np.ndarray) -> np.ndarray:
    """The [k, n] weight a requantized layout stands for."""
    n, blocks, b = codes.shape
    return ((codes - zeros[..., None].astype(np.float64)) * scales[..., None]).reshape(n, blocks * b).T


def output_error(w_in_out: np.ndarray, w_hat: np.ndarray, hessian: np.ndarray) -> float:
    """Relative error of the layer's output on the calibration activations: tr(E^T H E) / tr(W^T H W)."""
    e = w_hat - w_in_out
    return float(np.einsum("kn,kl,ln->", e, hessian, e) / np.einsum("kn,kl,ln->", w_in_out, hessian, w_in_out))
