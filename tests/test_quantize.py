"""The block packer: Q4_1-style weights survive exactly, lm_head and a tied embedding share one 8-bit table."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from export.quantize import BLOCK_SIZE, pack_blockwise


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
    packed, scales = t["w.q4"], t["w.scales"]
    q = np.stack([packed & 0xF, packed >> 4], axis=-1).reshape(n, k // BLOCK_SIZE, BLOCK_SIZE).astype(np.float64)
    d = scales.reshape(n, k // BLOCK_SIZE).astype(np.float64)
    offsets = t["w.block_offsets"].T.astype(np.float64)  # [n, nb]
    w = d[..., None] * (q - 8) + offsets[..., None]  # no zero points: MatMulNBits' implied 8
    return w.reshape(n, k).T


def test_q4_1_weights_survive_exactly():
    rng = np.random.default_rng(0)
    k, n = 96, 10  # three blocks: an odd count exercises zero-point padding
    d = rng.uniform(0.001, 0.05, (n, k // BLOCK_SIZE))
    low = rng.uniform(-0.4, 0.1, (n, k // BLOCK_SIZE))  # some blocks entirely positive
    q = rng.integers(0, 16, (n, k // BLOCK_SIZE, BLOCK_SIZE))
    q[..., 0], q[..., 1] = 0, 15  # a Q4_1 block always spans its whole range
    w = (d[..., None] * q + low[..., None]).astype(np.float32).reshape(n, k).T.copy()
    model = pack_blockwise(one_matmul(w), 4)
    np.testing.assert_allclose(reconstruct(model, k, n), w, atol=1e-6)


def test_lm_head_is_kept_at_8_bits():
    w = np.random.default_rng(1).normal(size=(64, 8)).astype(np.float32)
    model = pack_blockwise(one_matmul(w, name="lm_head"), 4)
    (node,) = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
    assert next(a.i for a in node.attribute if a.name == "bits") == 8


def test_fine_tuned_layers_are_kept_at_8_bits():
    w = np.random.default_rng(2).normal(size=(64, 8)).astype(np.float32)

    def bits(name: str, eight_bit_from: int | None) -> int:
        model = pack_blockwise(one_matmul(w, name=name), 4, eight_bit_from=eight_bit_from)
        (node,) = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
        return next(a.i for a in node.attribute if a.name == "bits")

    assert bits("layers.29.mlp.down_proj", 20) == 8  # tuned: a 4-bit step would round the fine-tune away
    assert bits("layers.19.mlp.down_proj", 20) == 4  # frozen: still the packaged Q4_1 grid
    assert bits("layers.29.mlp.down_proj", None) == 4


def tied_model(embed: np.ndarray) -> onnx.ModelProto:
    """ids -> embedding rows -> lm_head with the same matrix: the shape of every tied decoder."""
    vocab, hidden = embed.shape
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["embed", "ids"], ["h"], name="embed_tokens"),
            helper.make_node("MatMul", ["h", "head"], ["logits"], name="lm_head"),
        ],
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, "seq"])],
        [
            helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, "seq", hidden]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "seq", vocab]),
        ],
        [numpy_helper.from_array(embed, "embed"), numpy_helper.from_array(embed.T.copy(), "head")],
    )
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 10
    return model


def test_a_tied_embedding_reads_the_heads_8_bit_table():
    rng = np.random.default_rng(3)
    vocab, hidden = 40, 64
    d = rng.uniform(0.001, 0.01, (vocab, hidden // BLOCK_SIZE, 1))
    q = rng.integers(-127, 128, (vocab, hidden // BLOCK_SIZE, BLOCK_SIZE))
    q[..., 0] = 127  # a Q8_0 block: d = max|w| / 127
    embed = (d * q).astype(np.float32).reshape(vocab, hidden)
    model = pack_blockwise(tied_model(embed), 4)
    names = {i.name for i in model.graph.initializer}
    assert "embed" not in names and "head" not in names  # no float copy left
    assert [n.op_type for n in model.graph.node].count("GatherBlockQuantized") == 1
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ids = np.array([[0, 7, 39]], np.int64)
    rows, logits = session.run(None, {"ids": ids})
    np.testing.assert_allclose(rows[0], embed[ids[0]], atol=1e-6)  # Q8_0 rows come back exactly
    reference = embed[ids[0]] @ embed.T
    # the head's kernel rounds its input to int8 blocks (accuracy_level 4): close, not bit-equal
    np.testing.assert_allclose(logits[0], reference, atol=0.02 * np.abs(reference).max())


def test_an_untied_embedding_stays_as_it_was():
    rng = np.random.default_rng(4)
    model = tied_model(rng.normal(size=(40, 64)).astype(np.float32))
    head = next(i for i in model.graph.initializer if i.name == "head")
    head.CopyFrom(numpy_helper.from_array(rng.normal(size=(64, 40)).astype(np.float32), "head"))
    packed = pack_blockwise(model, 4)
    assert "embed" in {i.name for i in packed.graph.initializer}
    assert "Gather" in [n.op_type for n in packed.graph.node]


def test_the_gate_counts_near_ties_as_agreement_but_not_real_disagreements():
    from export.verify import TIE_MARGIN, agreement

    fp32 = np.array(
        [
            [5.0, 1.0, 0.0],  # quantized picks the same token
            [5.0, 5.0 - TIE_MARGIN / 2, 0.0],  # picks fp32's runner-up, a near-tie: agrees
            [5.0, 4.0, 0.0],  # picks a token fp32 rates a whole logit lower: disagrees
            [5.0, 5.0 - 1.01 * TIE_MARGIN, 0.0],  # just beyond the margin: disagrees
        ]
    )
    quantized = np.array([[4.0, 1.0, 0.0], [4.9, 5.0, 0.0], [4.0, 4.5, 0.0], [4.0, 4.5, 0.0]])
    raw, tie_aware = agreement(quantized, fp32)
    assert raw == 0.25
    assert tie_aware == 0.5
    assert agreement(fp32, fp32) == (1.0, 1.0)
