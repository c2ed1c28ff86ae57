"""Phi-3: llama with fused qkv and gate/up projections, split back apart here."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from edge.bundle import KVCacheLayout

from ..graph import Attention, DecoderSpec, RotaryLayer
from . import rotary

NAME = "phi3"
MODEL_TYPES = ("phi3",)


def spec(config: Any) -> DecoderSpec:
    return rotary.spec(NAME, config)


def _layer(sd: dict[str, np.ndarray], i: int, config: Any, spec: DecoderSpec, window: int | None) -> RotaryLayer:
    p = f"model.layers.{i}."
    q_size, kv_size = spec.num_heads * spec.head_dim, spec.num_kv_heads * spec.head_dim
    q, k, v = np.split(sd[p + "self_attn.qkv_proj.weight"], [q_size, q_size + kv_size])
    gate, up = np.split(sd[p + "mlp.gate_up_proj.weight"], 2)
    return RotaryLayer(
        Attention(q, k, v, sd[p + "self_attn.o_proj.weight"], window=window),
        gate,
        up,
        sd[p + "mlp.down_proj.weight"],
        attn_norm=sd[p + "input_layernorm.weight"],
        ffn_norm=sd[p + "post_attention_layernorm.weight"],
    )


def build(model: Any, spec: DecoderSpec, layout: KVCacheLayout) -> onnx.ModelProto:
    # partial_rotary_factor < 1 gives shorter rotary tables; GroupQueryAttention rotates that many dimensions
    return rotary.build(model, spec, layout, _layer)
