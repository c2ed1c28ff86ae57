"""GPT-2: LayerNorm, learned positions, multi-head attention without rotary, GELU."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

from edge.bundle import KVCacheLayout

from ..graph import DecoderSpec, GraphBuilder, attention, finish, state_dict
from .rotary import UnsupportedModel

NAME = "gpt2"
MODEL_TYPES = ("gpt2",)
ACTIVATIONS = {"gelu_new", "gelu_pytorch_tanh", "gelu_fast"}


def spec(config: Any) -> DecoderSpec:
    act = getattr(config, "activation_function", "gelu_new")
    if act not in ACTIVATIONS:
        raise UnsupportedModel(f"GPT-2 activation {act!r} is not supported", "use a gelu_new GPT-2 model")
    return DecoderSpec(
        NAME,
        config.n_layer,
        config.n_embd,
        config.n_head,
        config.n_head,
        config.n_embd // config.n_head,
        config.vocab_size,
        config.n_positions,
        float(config.layer_norm_epsilon),
    )


def build(model: Any, spec: DecoderSpec, layout: KVCacheLayout) -> onnx.ModelProto:
    sd = {k.removeprefix("transformer."): v for k, v in state_dict(model).items()}
    g = GraphBuilder()
    eps = spec.eps

    # positions = total_sequence_length - seq .. total_sequence_length - 1
    seq = g.op("Squeeze", [g.op("Shape", ["input_ids"], start=1, end=2)])
    total = g.op("Cast", ["total_sequence_length"], to=TensorProto.INT64)
    positions = g.op("Range", [g.op("Sub", [total, seq]), total, g.weight("step", np.array(1, np.int64))])
    # [1, seq] rather than [seq]: ORT's Range->Gather to Slice rewrite mishandles scalar bounds
    positions = g.op("Unsqueeze", [positions, g.weight("axis0", np.array([0], np.int64))])
    pos_emb = g.op("Gather", [g.weight("wpe.weight", sd["wpe.weight"]), positions], name="wpe")
    tok_emb = g.op("Gather", [g.weight("wte.weight", sd["wte.weight"]), "input_ids"], name="wte")
    x = g.op("Add", [tok_emb, pos_emb])

    def norm(inp: str, prefix: str, skip: str | None = None, bias: str | None = None) -> tuple[str, str]:
        w = g.weight(f"{prefix}.weight", sd[f"{prefix}.weight"])
        b = g.weight(f"{prefix}.bias", sd[f"{prefix}.bias"])
        if skip is None:
            return g.op("LayerNormalization", [inp, w, b], name=prefix, axis=-1, epsilon=eps), inp
        inputs = [inp, skip, w, b] + ([bias] if bias else [])
        out = g.op("SkipLayerNormalization", inputs, n_out=4, domain="com.microsoft", name=prefix, epsilon=eps)
        return out[0], out[3]

    h, residual = norm(x, "h.0.ln_1")
    for i in range(spec.num_layers):
        p = f"h.{i}."
        qkv = g.matmul(h, sd[p + "attn.c_attn.weight"], f"h.{i}.attn.c_attn")
        qkv = g.op("Add", [qkv, g.weight(f"h.{i}.attn.c_attn.bias", sd[p + "attn.c_attn.bias"])])
        attn = attention(g, spec, layout, i, [qkv], rotary=None)
        attn = g.matmul(attn, sd[p + "attn.c_proj.weight"], f"h.{i}.attn.c_proj")
        proj_bias = g.weight(f"h.{i}.attn.c_proj.bias", sd[p + "attn.c_proj.bias"])
        h, residual = norm(attn, f"h.{i}.ln_2", residual, proj_bias)

        fc = g.matmul(h, sd[p + "mlp.c_fc.weight"], f"h.{i}.mlp.c_fc")
        act = g.op("FastGelu", [fc, g.weight(f"h.{i}.mlp.c_fc.bias", sd[p + "mlp.c_fc.bias"])], domain="com.microsoft")
        down = g.matmul(act, sd[p + "mlp.c_proj.weight"], f"h.{i}.mlp.c_proj")
        down_bias = g.weight(f"h.{i}.mlp.c_proj.bias", sd[p + "mlp.c_proj.bias"])
        h, residual = norm(down, f"h.{i + 1}.ln_1" if i + 1 < spec.num_layers else "ln_f", residual, down_bias)

    lm_head = sd.get("lm_head.weight", sd["wte.weight"])
    return finish(g, spec, layout, h, lm_head.T)
