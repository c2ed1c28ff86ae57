"""The int4 packer keeps Q4_1-style weights exactly: w = d * q + min per block of 32."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from export.quantize import BLOCK_SIZE, _q4_min_offset


def one_matmul(w: np.ndarray, name: str = "proj") -> onnx.ModelProto:
    k, n = w.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name=name)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, n])],
        [numpy_helper.from_array(w, "w")],
    )
    return helper.make_model(graph)


def reconstruct(model: onnx.ModelProto, k: int, n: int) -> np.ndarray:
    t = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    packed, scales, zp = t["w.q4"], t["w.scales"], t["w.zero_points"]
    q = np.stack([packed & 0xF, packed >> 4], axis=-1).reshape(n, k // BLOCK_SIZE, BLOCK_SIZE).astype(np.float64)
    nb = k // BLOCK_SIZE
    z = np.stack([zp & 0xF, zp >> 4], axis=-1).reshape(n, -1)[:, :nb].astype(np.float64)
    d = scales.reshape(n, nb).astype(np.float64)
    offsets = t["w.block_offsets"].T.astype(np.float64)  # [n, nb]
    w = d[..., None] * (q - z[..., None]) + offsets[..., None]
    return w.reshape(n, k).T


def test_q4_1_weights_survive_exactly():
    rng = np.random.default_rng(0)
    k, n = 96, 10  # three blocks: an odd count exercises zero-point padding
    d = rng.uniform(0.001, 0.05, (n, k // BLOCK_SIZE))
    low = rng.uniform(-0.4, 0.1, (n, k // BLOCK_SIZE))  # some blocks entirely positive
    q = rng.integers(0, 16, (n, k // BLOCK_SIZE, BLOCK_SIZE))
    q[..., 0], q[..., 1] = 0, 15  # a Q4_1 block always spans its whole range
    w = (d[..., None] * q + low[..., None]).astype(np.float32).reshape(n, k).T.copy()
    model = _q4_min_offset(one_matmul(w))
    np.testing.assert_allclose(reconstruct(model, k, n), w, atol=1e-6)


def test_lm_head_is_kept_at_8_bits():
    w = np.random.default_rng(1).normal(size=(64, 8)).astype(np.float32)
    model = _q4_min_offset(one_matmul(w, name="lm_head"))
    (node,) = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
    assert next(a.i for a in node.attribute if a.name == "bits") == 8


def test_fine_tuned_layers_are_kept_at_8_bits():
    w = np.random.default_rng(2).normal(size=(64, 8)).astype(np.float32)

    def bits(name: str, eight_bit_from: int | None) -> int:
        model = _q4_min_offset(one_matmul(w, name=name), eight_bit_from=eight_bit_from)
        (node,) = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
        return next(a.i for a in node.attribute if a.name == "bits")

    assert bits("layers.29.mlp.down_proj", 20) == 8  # tuned: a 4-bit step would round the fine-tune away
    assert bits("layers.19.mlp.down_proj", 20) == 4  # frozen: still the packaged Q4_1 grid
    assert bits("layers.29.mlp.down_proj", None) == 4
