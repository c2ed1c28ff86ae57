"""Qwen2 and Qwen2.5: llama with biases on the q, k and v projections (:func:`rotary.layer` reads them)."""

from __future__ import annotations

from typing import Any

import onnx

from edge.bundle import KVCacheLayout

from ..graph import DecoderSpec
from . import rotary

NAME = "qwen2"
MODEL_TYPES = ("qwen2",)


def spec(config: Any) -> DecoderSpec:
    return rotary.spec(NAME, config)


def build(model: Any, spec: DecoderSpec, layout: KVCacheLayout) -> onnx.ModelProto:
    return rotary.build(model, spec, layout)
