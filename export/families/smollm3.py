"""SmolLM3: llama in which some layers use no rotary at all (``no_rope_layers[i] == 0``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from edge.bundle import KVCacheLayout

from ..graph import DecoderSpec, RotaryLayer
from . import rotary

NAME = "smollm3"
MODEL_TYPES = ("smollm3",)


def spec(config: Any) -> DecoderSpec:
    return rotary.spec(NAME, config)


def _layer(sd: dict[str, np.ndarray], i: int, config: Any, spec: DecoderSpec, window: int | None) -> RotaryLayer:
    return rotary.layer(sd, i, config, spec, window, rotary="rope" if config.no_rope_layers[i] else None)


def build(model: Any, spec: DecoderSpec, layout: KVCacheLayout) -> onnx.ModelProto:
    return rotary.build(model, spec, layout, _layer)
