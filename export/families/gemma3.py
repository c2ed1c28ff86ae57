"""Gemma 3 (text): llama reshaped.

RMSNorm scales by (1 + w); embeddings are multiplied by sqrt(hidden); the feed-forward is GeGLU
(tanh gelu); each sub-block is normalised before and after (:func:`rotary.layer` reads the extra
norms); q and k heads are normalised before rotary; local sliding-window layers and global layers
rotate with their own bases; attention is scaled by ``query_pre_attn_scalar ** -0.5``; attention
and final logits are soft-capped where the config sets caps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from edge.bundle import KVCacheLayout

from ..graph import DecoderSpec, RotaryLayer, RotaryStyle
from . import rotary

NAME = "gemma3"
MODEL_TYPES = ("gemma3_text",)
ALWAYS_BOS = True  # trained with <bos> before every text; without it the model degenerates
ACTIVATIONS = {"gelu_pytorch_tanh", "gelu_tanh"}


def spec(config: Any) -> DecoderSpec:
    if getattr(config, "hidden_activation", "gelu_pytorch_tanh") not in ACTIVATIONS:
        raise rotary.UnsupportedModel(
            f"Gemma 3 activation {config.hidden_activation!r} is not supported", "use a gelu_pytorch_tanh model"
        )
    return rotary.spec(NAME, config)


def _layer(sd: dict[str, np.ndarray], i: int, config: Any, spec: DecoderSpec, window: int | None) -> RotaryLayer:
    # sliding-window layers rotate with rope_local_base_freq, global ones with rope_theta
    return rotary.layer(sd, i, config, spec, window, rotary="rope_local" if window else "rope")


def build(model: Any, spec: DecoderSpec, layout: KVCacheLayout) -> onnx.ModelProto:
    config = model.config
    style = RotaryStyle(
        norm_offset=1.0,
        activation="gelu_tanh",
        embed_scale=config.hidden_size**0.5,
        attn_scale=config.query_pre_attn_scalar**-0.5,
        attn_softcap=getattr(config, "attn_logit_softcapping", None),
        final_softcap=getattr(config, "final_logit_softcapping", None),
    )
    return rotary.build(model, spec, layout, _layer, style)
