"""Every family the graph builder knows, on a tiny random model built from its transformers config.

For each: fp32 greedy decoding through edge's runtime equals transformers' over 24 tokens while the
KV cache grows several times; int8-weight and int4 bundles pass the quality gate; the chat
template converts to edge's jinja-free form and its end-of-turn token stops generation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import edge
from edge.text.decoder import OnnxDecoder
from export import export_bundle
from export.families import FAMILIES, SUPPORTED_MODEL_TYPES
from export.verify import FP32_TOLERANCE
from tests.conftest import CHATML, _train_tokenizer
from tests.test_export import edge_greedy, torch_greedy

NEW_FAMILIES = ["qwen2", "qwen3", "gemma3", "phi3", "smollm3"]
GEMMA_TURNS = (
    "{{ bos_token }}{% for message in messages %}{% set role = 'model' if message['role'] == 'assistant' "
    "else message['role'] %}{{ '<start_of_turn>' + role + '\\n' + message['content'] + '<end_of_turn>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)
PHI3 = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
# each family's turn markers, shaped like its real template, and the token that ends a reply
TEMPLATES = {
    "qwen2": (CHATML, "<|im_end|>"),
    "qwen3": (CHATML, "<|im_end|>"),
    "smollm3": (CHATML, "<|im_end|>"),
    "gemma3": (GEMMA_TURNS, "<end_of_turn>"),
    "phi3": (PHI3, "<|end|>"),
}
TURN_TOKENS = ["<start_of_turn>", "<end_of_turn>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]


def _config(family: str, vocab: int, bos: int, eos: int):
    """A tiny config of ``family`` that exercises what sets it apart from llama."""
    import transformers as tf

    shape = dict(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=eos,
        tie_word_embeddings=True,
    )
    if family == "llama":
        return tf.LlamaConfig(**shape)
    if family == "qwen2":
        return tf.Qwen2Config(**shape)
    if family == "qwen3":
        return tf.Qwen3Config(head_dim=16, **shape)
    if family == "phi3":
        return tf.Phi3Config(**shape)
    if family == "smollm3":
        return tf.SmolLM3Config(no_rope_layers=[1, 0, 1], **shape)
    # Gemma 3: a window of 8 that the 24 generated tokens outgrow, local and global rotary bases,
    # query_pre_attn_scalar apart from head_dim, and both soft caps
    return tf.Gemma3TextConfig(
        head_dim=16,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        sliding_window=8,
        query_pre_attn_scalar=24,
        rope_theta=1_000_000.0,
        rope_local_base_freq=10_000.0,
        attn_logit_softcapping=50.0,
        final_logit_softcapping=30.0,
        attn_implementation="eager",
        **shape,
    )


def _on_gguf_grid(model) -> None:
    """Put the weights on GGUF grids, as a Q4_1 file holds them: matmuls Q4_1, the embedding Q8_0."""
    import torch
    from gguf import GGMLQuantizationType as T
    from gguf.quants import dequantize, quantize

    embed = model.get_input_embeddings().weight
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2 and p.shape[1] % 32 == 0:
                kind = T.Q8_0 if p is embed else T.Q4_1
                p.copy_(torch.from_numpy(dequantize(quantize(p.numpy(), kind), kind)))


def make_family_folder(folder: Path, family: str, q4_1: bool = False) -> Path:
    """A tiny random ``family`` model with a trained tokenizer and the family's chat template.

    ``q4_1`` puts the weights on Q4_1 blocks first, as a GGUF source's are.
    """
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    raw = _train_tokenizer()
    raw.add_special_tokens(TURN_TOKENS)
    template, turn_end = TEMPLATES[family]
    bos, eos = raw.token_to_id("<|im_start|>"), raw.token_to_id(turn_end)
    model = AutoModelForCausalLM.from_config(_config(family, raw.get_vocab_size(), bos, eos))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(8.0)  # peaked, varied next-token distributions (see conftest)
            else:  # biases and norms start at 0 or 1: random values make a missed one show
                p.add_(torch.randn_like(p) * 0.2)
    if q4_1:
        _on_gguf_grid(model)
    model.save_pretrained(folder)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw, eos_token=turn_end, bos_token="<|im_start|>", pad_token="<|endoftext|>"
    )
    tok.chat_template = template
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def family_folder(tmp_path_factory):
    cache: dict[tuple[str, bool], Path] = {}

    def get(family: str, q4_1: bool = False) -> Path:
        if (family, q4_1) not in cache:
            folder = tmp_path_factory.mktemp(f"hf-{family}{'-q4_1' * q4_1}")
            cache[family, q4_1] = make_family_folder(folder, family, q4_1)
        return cache[family, q4_1]

    return get


@pytest.fixture(scope="module")
def family_bundle(tmp_path_factory, family_folder):
    cache: dict[tuple[str, str, bool], Path] = {}

    def get(family: str, precision: str, q4_1: bool = False) -> Path:
        if (family, precision, q4_1) not in cache:
            out = tmp_path_factory.mktemp("bundles") / f"{family}-{precision}"
            export_bundle(str(family_folder(family, q4_1)), out, precision, progress=lambda _: None)
            cache[family, precision, q4_1] = out
        return cache[family, precision, q4_1]

    return get


def test_every_family_is_registered():
    assert set(NEW_FAMILIES) | {"llama", "gpt2"} == set(FAMILIES)
    assert {"qwen2", "qwen3", "gemma3_text", "phi3", "smollm3", "llama", "mistral", "gpt2"} == set(
        SUPPORTED_MODEL_TYPES
    )


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_fp32_greedy_matches_transformers(family_folder, family_bundle, family, monkeypatch):
    monkeypatch.setattr(OnnxDecoder, "INITIAL_CAPACITY", 3)  # the KV buffers grow several times
    path = family_bundle(family, "fp32")
    report = json.loads((path / "report.json").read_text())
    # Gemma's (1 + w) norms and soft caps on 8x-scaled random weights round to a few 1e-3
    assert report["fp32_vs_source_max_abs_logit_diff"] < FP32_TOLERANCE
    model = edge.load(path)
    assert model.manifest.family == family
    ids = model.tokenizer.encode("Paris is the capital of")
    assert edge_greedy(model, ids, 24) == torch_greedy(family_folder(family), ids, 24)


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_int8_weight_passes_the_gate(family_bundle, family):
    report = json.loads((family_bundle(family, "int8-weight") / "report.json").read_text())
    assert report["precision"] == "int8-weight" and report["passed"], report


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_fp16_passes_the_gate_with_a_half_precision_cache(family_bundle, family):
    """fp16 (for GPUs): weights, activations and the KV cache in half precision, still within the gate."""
    path = family_bundle(family, "fp16")
    report = json.loads((path / "report.json").read_text())
    assert report["precision"] == "fp16" and report["passed"], report
    assert edge.load(path).manifest.kv_cache.dtype == "float16"


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_int4_keeps_q4_1_weights_and_passes_the_gate(family_bundle, family):
    """int4 on weights a Q4_1 GGUF holds: the blocks are kept, so only the int8 activations differ.

    (4 bits of plain random Gaussian weights miss the gate in every family, llama included: about
    50-60% tie-aware agreement, 94% for Gemma's soft-capped logits. Real weights are not random.)
    """
    report = json.loads((family_bundle(family, "int4", q4_1=True) / "report.json").read_text())
    assert report["precision"] == "int4" and report["passed"], report


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_chat_template_and_stop_token(family_folder, family_bundle, family):
    from transformers import AutoTokenizer

    model = edge.load(family_bundle(family, "fp32"))
    manifest = model.manifest
    tokenizer = AutoTokenizer.from_pretrained(family_folder(family))
    msgs = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Bye"},
    ]
    assert manifest.chat_template.render(msgs) == tokenizer.apply_chat_template(
        msgs, tokenize=False, add_generation_prompt=True
    )
    assert tokenizer.convert_tokens_to_ids(TEMPLATES[family][1]) in manifest.tokens.stop_ids


def test_gemma_puts_bos_before_every_prompt(family_bundle):
    """Gemma reads every text after <bos> (``ALWAYS_BOS``); the other tiny tokenizers add none."""
    model = edge.load(family_bundle("gemma3", "fp32"))
    tokens = model.manifest.tokens
    assert tokens.add_bos and tokens.bos_id is not None
    assert model.encode_prompt("Paris is", 8) == [tokens.bos_id, *model.tokenizer.encode("Paris is")]
    chat = model.encode_prompt(model.chat_text([{"role": "user", "content": "Hi"}]), 8)
    assert chat[:1] == [tokens.bos_id] and chat[1:2] != [tokens.bos_id]  # the template's own, not twice
    assert not edge.load(family_bundle("qwen2", "fp32")).manifest.tokens.add_bos


def test_a_tokenizer_that_adds_bos_is_read_as_wanting_it():
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    from export.sources import _tokenizer_adds_bos

    raw = _train_tokenizer()
    assert not _tokenizer_adds_bos(PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<|im_start|>"))
    bos = ("<|im_start|>", raw.token_to_id("<|im_start|>"))
    raw.post_processor = processors.TemplateProcessing(single=f"{bos[0]} $A", special_tokens=[bos])
    assert _tokenizer_adds_bos(PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<|im_start|>"))
