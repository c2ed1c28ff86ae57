"""Calibrated 4-bit requantization (export.calibrate): the layout MatMulNBits reads, and that calibration helps."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.bundle import open_bundle
from edge.text.tokenizer import Tokenizer
from export import calibrate
from export.calibrate import Scheme


def _correlated(k: int, tokens: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Activations with a few loud, correlated inputs, as a transformer's are; and their X^T X / T."""
    x = rng.normal(size=(tokens, k)) @ (np.eye(k) + 0.3 * rng.normal(size=(k, k)))
    x[:, :3] *= 20
    return x, x.T @ x / tokens


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("block", [16, 32])
def test_matmulnbits_reads_the_layout_as_dequantize_says(symmetric, block):
    rng = np.random.default_rng(0)
    k, n = 64, 24
    w = rng.normal(size=(k, n))
    _, h = _correlated(k, 256, rng)
    codes, scales, zeros = calibrate.requantize(w, h, Scheme("search", block, symmetric))
    packed, d, z = calibrate.pack(codes, scales, zeros, symmetric)
    inits = [numpy_helper.from_array(packed, "B"), numpy_helper.from_array(d, "scales")]
    if z is not None:
        inits.append(numpy_helper.from_array(z, "zp"))
    node = helper.make_node(
        "MatMulNBits", ["x", "B", "scales"] + (["zp"] if z is not None else []), ["y"],
        domain="com.microsoft", K=k, N=n, bits=4, block_size=block,
    )  # fmt: skip
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])], inits,
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    x = rng.normal(size=(1, k)).astype(np.float32)
    y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, x @ calibrate.dequantize(codes, scales, zeros), rtol=1e-4, atol=1e-4)
    if symmetric:
        assert (zeros == 8).all()


@pytest.mark.parametrize("symmetric", [False, True])
def test_gptq_keeps_the_layer_output_closer_than_searching_each_block(symmetric):
    rng = np.random.default_rng(1)
    k, n = 128, 48
    w = rng.normal(size=(k, n)) * 0.05
    x, h = _correlated(k, 512, rng)
    errors = {}
    for method in calibrate.METHODS:
        codes, scales, zeros = calibrate.requantize(w, h, Scheme(method, 32, symmetric))
        assert codes.max() <= 15 and codes.shape == (n, k // 32, 32)
        errors[method] = calibrate.output_error(w, calibrate.dequantize(codes, scales, zeros), h)
    # plain rounding to the min/max grid, as an uncalibrated export does
    blocks = w.T.reshape(n, -1, 32)
    lo, hi = blocks.min(-1, keepdims=True), blocks.max(-1, keepdims=True)
    d = (hi - lo) / 15
    z = np.clip(np.rint(-lo / d), 0, 15)
    rtn = ((np.clip(np.rint(blocks / d + z), 0, 15) - z) * d).reshape(n, k).T
    assert errors["gptq"] < 0.7 * errors["search"] <= 0.7 * calibrate.output_error(w, rtn, h)


def test_input_hessians_from_a_tiny_bundle(tiny_bundle):
    bundle = open_bundle(tiny_bundle("llama", "fp32"))
    chunks = calibrate.calib_chunks(calibrate.calib_text(), Tokenizer(bundle.tokenizer_path).encode, max_tokens=40)
    assert len(chunks) >= 5
    hessians = calibrate.input_hessians(bundle.model_path, bundle.manifest.kv_cache, chunks, threads=1)
    model = onnx.load(str(bundle.model_path))
    weights = {i.name: tuple(i.dims) for i in model.graph.initializer}
    matmuls = {n.name: weights[n.input[1]] for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights}
    assert set(hessians) == set(matmuls) and "lm_head" in hessians and len(matmuls) > 5
    for name, (k, _) in matmuls.items():
        assert hessians[name].shape == (k, k), name
    for h in hessians.values():
        np.testing.assert_allclose(h, h.T, rtol=1e-9, atol=1e-9)
        assert (np.linalg.eigvalsh(h) > -1e-6 * np.abs(h).max()).all()


def test_calibration_text_is_not_the_evaluation_text():
    from export.verify import eval_text

    calib, evaluation = calibrate.calib_text(), eval_text()
    sentences = {s.strip() for s in evaluation.replace("\n", " ").split(".") if len(s.strip()) > 20}
    assert not any(s in calib for s in sentences)
    assert len(calib.split()) > 300
