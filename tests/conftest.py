"""Shared fixtures: tiny random llama and GPT-2 models built from configs, and their bundles.

The tokenizer is trained here with `tokenizers`, so the tests need no download. Bundles are
exported once per session and shared; tests that modify one copy it first.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital of France, and Berlin is the capital of Germany.",
    "Small models can run on a Raspberry Pi without any network at all.",
    "Café, naïve, jalapeño: accents make bytes longer than characters. 東京 🙂",
] * 20


def _train_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def make_hf_folder(folder: Path, family: str) -> Path:
    """Write a tiny random model of ``family`` ("llama" or "gpt2") as a Hugging Face folder."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    raw = _train_tokenizer()
    vocab = raw.get_vocab_size()
    eos = raw.token_to_id("<|endoftext|>")
    if family == "llama":
        config = LlamaConfig(
            vocab_size=vocab,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=2048,
            bos_token_id=raw.token_to_id("<|im_start|>"),
            eos_token_id=raw.token_to_id("<|im_end|>"),
            tie_word_embeddings=True,
        )
        model = LlamaForCausalLM(config)
        tok = PreTrainedTokenizerFast(
            tokenizer_object=raw, eos_token="<|im_end|>", bos_token="<|im_start|>", pad_token="<|endoftext|>"
        )
        tok.chat_template = CHATML
    else:
        config = GPT2Config(
            vocab_size=vocab, n_embd=64, n_layer=2, n_head=4, n_positions=512, bos_token_id=eos, eos_token_id=eos
        )
        model = GPT2LMHeadModel(config)
        tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    # random weights are tiny; scaling them up gives peaked, varied next-token distributions
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(8.0)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


HEAVY = ("torch", "transformers", "optimum", "export", "onnx")
LEAN_CLI = (
    "import sys\n"
    "from edge.cli import main\n"
    "code = main(sys.argv[1:])\n"
    f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {set(HEAVY)!r})\n"
    "print('HEAVY:' + ','.join(heavy), file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def run_lean_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run ``edge-run ARGS`` in a fresh process and assert it loaded none of :data:`HEAVY`."""
    r = subprocess.run(
        [sys.executable, "-c", LEAN_CLI, *args], input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    heavy = next((line for line in r.stderr.splitlines() if line.startswith("HEAVY:")), None)
    assert heavy == "HEAVY:", r.stderr
    return r


@pytest.fixture(scope="session")
def hf_folder(tmp_path_factory):
    """``hf_folder("llama")`` -> path of a tiny random Hugging Face model folder."""
    cache: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in cache:
            cache[family] = make_hf_folder(tmp_path_factory.mktemp(f"hf-{family}"), family)
        return cache[family]

    return get


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, hf_folder):
    """``tiny_bundle("llama", "fp32")`` -> path of an exported bundle (shared: do not modify)."""
    from export import export_bundle

    cache: dict[tuple[str, str], Path] = {}

    def get(family: str = "llama", precision: str = "fp32") -> Path:
        key = (family, precision)
        if key not in cache:
            out = tmp_path_factory.mktemp("bundles") / f"{family}-{precision}"
            export_bundle(str(hf_folder(family)), out, precision, progress=lambda _: None)
            cache[key] = out
        return cache[key]

    return get


@pytest.fixture
def bundle_copy(tmp_path, tiny_bundle):
    """A private copy of the tiny llama fp32 bundle, safe to corrupt."""
    dst = tmp_path / "bundle"
    shutil.copytree(tiny_bundle("llama", "fp32"), dst)
    return dst


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    # the checksum record and default bundle go to a per-session folder, never ~/.cache
    monkeypatch.setenv("EDGE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "edge-cache"))


@pytest.fixture(scope="session")
def vad_path():
    """The Silero VAD model from the silero-vad package (installed --no-deps)."""
    from edge.speech.vad import packaged_vad_path

    path = packaged_vad_path()
    if path is None:
        pytest.skip("silero-vad is not installed: pip install --no-deps silero-vad")
    return path


WHISPER_SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>"]


def make_whisper_folder(folder: Path) -> Path:
    """A tiny random Whisper (2+2 layers, d_model 64) saved as a Hugging Face folder with tokenizer.json."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=WHISPER_SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(
        ["set the oven to one hundred and eighty degrees", "switch the kitchen light on"] * 20, trainer
    )
    eot, sot, no_ts = (tok.token_to_id(t) for t in WHISPER_SPECIALS)
    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=tok.get_vocab_size(),
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_target_positions=64,
        decoder_start_token_id=sot,
        eos_token_id=eot,
        pad_token_id=eot,
        bos_token_id=eot,
        suppress_tokens=[sot, no_ts],
        begin_suppress_tokens=[eot],
    )
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot,
        eos_token_id=eot,
        pad_token_id=eot,
        no_timestamps_token_id=no_ts,
        suppress_tokens=[sot, no_ts],
        begin_suppress_tokens=[eot],
        max_length=64,
    )
    model.save_pretrained(folder)
    tok.save(str(folder / "tokenizer.json"))
    return folder


@pytest.fixture(scope="session")
def whisper_folder(tmp_path_factory):
    return make_whisper_folder(tmp_path_factory.mktemp("hf-whisper"))


@pytest.fixture(scope="session")
def whisper_bundle(tmp_path_factory, whisper_folder):
    """``whisper_bundle("int8")`` -> an exported tiny Whisper bundle (shared: do not modify)."""
    from export import export_bundle

    cache: dict[str, Path] = {}

    def get(precision: str = "int8") -> Path:
        if precision not in cache:
            out = tmp_path_factory.mktemp("bundles") / f"whisper-{precision}"
            export_bundle(str(whisper_folder), out, precision, progress=lambda _: None)
            cache[precision] = out
        return cache[precision]

    return get
