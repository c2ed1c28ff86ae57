"""Qwen3: llama with an RMSNorm on each query and key head before rotary.

GroupQueryAttention rotates its inputs itself, so q and k are projected, normalised per head and
handed over separately (:func:`export.graph.build_rotary_decoder`, when a layer has q/k norms)."""

from __future__ import annotations

from typing import Any

import onnx

from edge.bundle import KVCacheLayout

from ..graph import DecoderSpec
from . import rotary

NAME = "qwen3"
MODEL_TYPES = ("qwen3",)


def spec(config: Any) -> DecoderSpec:
    return rotary.spec(NAME, config)


def build(model: Any, spec: DecoderSpec, layout: KVCacheLayout) -> onnx.ModelProto:
    return rotary.build(model, spec, layout)
