"""What the rotary families share: their config's shape facts and the llama weight names.

llama, Qwen2/2.5, Qwen3, SmolLM3 and Gemma 3 name their weights alike (``model.layers.N.self_attn.q_proj``
...); the differences a state dict shows by itself (q/k/v biases, per-head q/k norms, Gemma's
extra norms) are read here, and what it does not show (rotary per layer, windows, scales) is the
family file's to say.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx

from edge.bundle import KVCacheLayout
from edge.errors import EdgeError

from ..graph import (
    Attention,
    DecoderSpec,
    RotaryDecoder,
    RotaryLayer,
    RotaryStyle,
    build_rotary_decoder,
    rotary_cache,
    state_dict,
)

# rotary variants whose frequencies change with the sequence length: the graph's tables are fixed,
# so the context stops where the original frequencies end
_LENGTH_DEPENDENT_ROPE = {"dynamic", "longrope"}


class UnsupportedModel(EdgeError):
    """The model's family is known but it uses an option the graph builder does not implement."""


def spec(family: str, config: Any) -> DecoderSpec:
    """The shape facts of a rotary decoder from its transformers config."""
    heads = config.num_attention_heads
    context = config.max_position_embeddings
    scaling = getattr(config, "rope_scaling", None) or {}
    if scaling.get("rope_type", scaling.get("type")) in _LENGTH_DEPENDENT_ROPE:
        context = scaling.get("original_max_position_embeddings") or getattr(
            config, "original_max_position_embeddings", context
        )
    return DecoderSpec(
        family,
        config.num_hidden_layers,
        config.hidden_size,
        heads,
        getattr(config, "num_key_value_heads", None) or heads,
        getattr(config, "head_dim", None) or config.hidden_size // heads,
        config.vocab_size,
        context,
        float(config.rms_norm_eps),
    )


def windows(config: Any) -> list[int | None]:
    """Each layer's sliding window (None: sees the whole context).

    The config's ``layer_types`` says which layers slide; without it (Mistral, Phi-3) a
    ``sliding_window`` applies to every layer, as transformers applies it.
    """
    window = getattr(config, "sliding_window", None)
    types = getattr(config, "layer_types", None) or ["sliding_attention"] * config.num_hidden_layers
    return [window if t == "sliding_attention" and window else None for t in types]


def layer(
    sd: dict[str, np.ndarray], i: int, config: Any, spec: DecoderSpec, window: int | None, rotary: str | None = "rope"
) -> RotaryLayer:
    """Decoder layer ``i`` under the llama weight names (``config`` and ``spec`` are for readers that vary it)."""
    p = f"model.layers.{i}."
    a, m = p + "self_attn.", p + "mlp."
    extra = [n for n in (a + "o_proj.bias", m + "gate_proj.bias", m + "down_proj.bias") if n in sd]
    if extra:
        raise UnsupportedModel(f"the graph builder has no place for {extra[0]}", "export a model without those biases")
    bias = tuple(sd[a + f"{n}_proj.bias"] for n in "qkv") if a + "q_proj.bias" in sd else None
    attn = Attention(
        *(sd[a + f"{n}_proj.weight"] for n in "qkvo"),
        bias=bias,
        q_norm=sd.get(a + "q_norm.weight"),
        k_norm=sd.get(a + "k_norm.weight"),
        rotary=rotary,
        window=window,
    )
    gate, up, down = (sd[m + f"{n}_proj.weight"] for n in ("gate", "up", "down"))
    norm = {n: sd.get(f"{p}{n}.weight") for n in ("pre_feedforward_layernorm", "post_feedforward_layernorm")}
    sandwich = norm["pre_feedforward_layernorm"] is not None  # Gemma: a norm before and after each sub-block
    post_attention = sd[p + "post_attention_layernorm.weight"]
    return RotaryLayer(
        attn,
        gate,
        up,
        down,
        attn_norm=sd[p + "input_layernorm.weight"],
        ffn_norm=norm["pre_feedforward_layernorm"] if sandwich else post_attention,
        attn_out_norm=post_attention if sandwich else None,
        ffn_out_norm=norm["post_feedforward_layernorm"],
    )


LayerReader = Callable[[dict[str, np.ndarray], int, Any, DecoderSpec, "int | None"], RotaryLayer]


def build(
    model: Any,
    spec: DecoderSpec,
    layout: KVCacheLayout,
    read_layer: LayerReader = layer,
    style: RotaryStyle | None = None,
) -> onnx.ModelProto:
    """The graph of a llama-named rotary model; a family passes its own layer reader or style where it differs.

    Rotary tables: ``rope`` from the model's ``rotary_emb``, and ``rope_local`` from
    ``rotary_emb_local`` where the model has one (Gemma 3's sliding-window layers).
    """
    sd = state_dict(model)
    config = model.config
    layers = [read_layer(sd, i, config, spec, w) for i, w in enumerate(windows(config))]
    embed = sd["model.embed_tokens.weight"]
    caches = {"rope": rotary_cache(model.model.rotary_emb, spec.context_length)}
    if hasattr(model.model, "rotary_emb_local"):
        caches["rope_local"] = rotary_cache(model.model.rotary_emb_local, spec.context_length)
    decoder = RotaryDecoder(
        embed, layers, sd["model.norm.weight"], sd.get("lm_head.weight", embed), caches, style or RotaryStyle()
    )
    return build_rotary_decoder(decoder, spec, layout)
