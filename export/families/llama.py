"""llama and Mistral: RMSNorm, rotary, grouped-query attention, SwiGLU (Mistral: a sliding window)."""

from __future__ import annotations

from typing import Any

import onnx

from edge.bundle import KVCacheLayout

from ..graph import DecoderSpec
from . import rotary

NAME = "llama"
MODEL_TYPES = ("llama", "mistral")


def spec(config: Any) -> DecoderSpec:
    return rotary.spec(NAME, config)


def build(model: Any, spec: DecoderSpec, layout: KVCacheLayout) -> onnx.ModelProto:
    return rotary.build(model, spec, layout)
