"""Reading SmolLM3 GGUF files, which transformers 4.57's GGUF loader does not know.

llama.cpp writes SmolLM3 as its llama architecture under the name ``smollm3``: the same metadata keys
and tensor names, q and k permuted the same way (its converter subclasses the llama one), and a
byte-level BPE vocabulary. The layers without rotary are not written at all: llama.cpp and
transformers' ``SmolLM3Config`` both derive them from the same fixed interval (every fourth layer).
So teaching transformers the name is enough: llama's config keys, llama's tensor processor (which
undoes the permutation) and llama's tokenizer converter.
"""

from __future__ import annotations

ARCH = "smollm3"


def teach_transformers() -> None:
    """Register ``smollm3`` with transformers' GGUF loader as the llama architecture it is (idempotent)."""
    from transformers import modeling_gguf_pytorch_utils as loader
    from transformers.integrations import ggml

    if ARCH in loader.GGUF_SUPPORTED_ARCHITECTURES:
        return
    ggml.GGUF_CONFIG_MAPPING[ARCH] = dict(ggml.GGUF_CONFIG_MAPPING["llama"])
    ggml.GGUF_TO_FAST_CONVERTERS[ARCH] = ggml.GGUF_TO_FAST_CONVERTERS["llama"]
    loader.TENSOR_PROCESSORS[ARCH] = loader.TENSOR_PROCESSORS["llama"]
    loader.GGUF_SUPPORTED_ARCHITECTURES.append(ARCH)
