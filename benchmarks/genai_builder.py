"""onnxruntime-genai's model builder, run in its own venv by ``python -m benchmarks setup``.

genai 0.18's Gemma 3 builder reads the config fields of transformers 4 (``rope_local_base_freq``, one flat
``rope_parameters``), while transformers 5, which the builder itself needs, nests the rotary settings per layer
type (``{"full_attention": {...}, "sliding_attention": {...}}``): building Gemma 3 then stops on
``KeyError: 'rope_type'``. This puts the transformers 4 fields back on the loaded config, then runs the builder
with the same arguments. Every other config passes through unchanged.
"""

import runpy
import sys

sys.path.pop(0)  # this folder: its profile.py would stand in for the standard library's
import transformers  # noqa: E402

_load = transformers.AutoConfig.from_pretrained.__func__


def _with_flat_rope(cls, *args, **kwargs):
    config = _load(cls, *args, **kwargs)
    for c in (config, getattr(config, "text_config", None)):
        rope = getattr(c, "rope_parameters", None)
        if isinstance(rope, dict) and "full_attention" in rope and "sliding_attention" in rope:
            c.rope_local_base_freq = rope["sliding_attention"]["rope_theta"]
            c.rope_parameters = dict(rope["full_attention"])
            c.rope_theta = c.rope_parameters["rope_theta"]
    return config


transformers.AutoConfig.from_pretrained = classmethod(_with_flat_rope)
sys.argv[0] = "onnxruntime_genai.models.builder"
runpy.run_module("onnxruntime_genai.models.builder", run_name="__main__")
