"""``python -m benchmarks profile`` on a tiny int4 bundle: a real onnxruntime trace, split by role."""

from __future__ import annotations

from benchmarks.profile import ROLES, measure, role


def test_roles_follow_the_exported_names():
    assert role("MatMulNBits", "layers.3.mlp.down_proj.q4") == "decoder matmuls"
    assert role("MatMulNBits", "lm_head.q8") == "output layer"
    assert role("ReduceSum", "layers.3.mlp.down_proj/block_sums") == "Q4_1 offsets"
    assert role("Add", "layers.3.mlp.down_proj.add") == "Q4_1 offsets"
    assert role("GroupQueryAttention", "layers.3.attn") == "attention"
    assert role("SkipSimplifiedLayerNormalization", "layers.4.input_layernorm") == "norms"


def test_an_int4_trace_shows_every_part_of_a_decode_step(tiny_bundle, tmp_path):
    summary = measure("edge", tiny_bundle("llama", "int4"), 6, [5, 6, 7, 8], tmp_path)
    assert summary["steps"] == 5  # six tokens: the prefill gives the first, five decode steps
    for part in ("decoder matmuls", "output layer", "Q4_1 offsets", "attention", "norms"):
        assert summary[f"{part} us"] > 0, part
    parts = sum(summary[f"{r} us"] for r in ROLES)
    assert abs(summary["kernel_us_per_step"] - parts) <= len(ROLES)  # each figure is rounded on its own
