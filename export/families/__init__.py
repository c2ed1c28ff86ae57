"""The model families edge's fused graph builder knows: one module each, registered here.

A family module has ``NAME`` (the manifest's family), ``MODEL_TYPES`` (the transformers
``model_type`` values it takes), ``spec(config) -> DecoderSpec`` and
``build(model, spec, layout) -> onnx.ModelProto``, and optionally ``ALWAYS_BOS = True`` when the
model needs its BOS token before every text whatever the tokenizer says. Adding a family is one
module and one line below.
"""

from __future__ import annotations

from types import ModuleType

from . import gemma3, gpt2, llama, phi3, qwen2, qwen3, smollm3
from .rotary import UnsupportedModel

FAMILIES: dict[str, ModuleType] = {m.NAME: m for m in (llama, qwen2, qwen3, gemma3, phi3, smollm3, gpt2)}
_BY_MODEL_TYPE = {t: m for m in FAMILIES.values() for t in m.MODEL_TYPES}
SUPPORTED_MODEL_TYPES = tuple(sorted(_BY_MODEL_TYPE))


def family_for(model_type: str) -> ModuleType | None:
    """The family module for a transformers ``model_type``, or None when edge has no builder for it."""
    return _BY_MODEL_TYPE.get(model_type)


__all__ = ["FAMILIES", "SUPPORTED_MODEL_TYPES", "UnsupportedModel", "family_for"]
