"""Sampling, stopping and streaming behave as documented."""

from __future__ import annotations

import numpy as np
import pytest

import edge
from edge.text.generate import GenerationStats, generate
from edge.text.model import _held_back
from edge.text.sampling import Sampler, SamplingOptions

GREEDY = SamplingOptions(temperature=0)


@pytest.fixture(scope="module")
def model(tiny_bundle):
    return edge.load(tiny_bundle("llama", "fp32"))


def test_same_seed_same_output_different_seed_differs(model):
    def run(seed):
        opts = SamplingOptions(temperature=1.0, top_k=0, top_p=1.0, seed=seed)
        return model.generate("The quick", raw=True, max_new_tokens=24, sampling=opts).text

    assert run(7) == run(7)
    assert len({run(s) for s in range(5)}) > 1, "different seeds never changed the output"


def test_top_k_one_is_greedy(model):
    greedy = model.generate("Paris is", raw=True, max_new_tokens=16, sampling=GREEDY).text
    k1 = SamplingOptions(temperature=1.5, top_k=1, seed=3)
    assert model.generate("Paris is", raw=True, max_new_tokens=16, sampling=k1).text == greedy


def test_stop_token_ends_generation(model, monkeypatch):
    ids = model.tokenizer.encode("Paris is")
    greedy = list(generate(model.decoder, ids, Sampler(GREEDY), 3, set(), model.context_length))
    # make the 2nd greedy token a stop token: generation must end after the 1st
    monkeypatch.setattr(model.manifest.tokens, "stop_ids", [greedy[1]])
    stats = GenerationStats()
    out = "".join(model.stream_ids(ids, max_new_tokens=10, sampling=GREEDY, stats=stats))
    assert stats.finish_reason == "stop" and stats.new_tokens == 1
    assert out == model.tokenizer.decode(greedy[:1])


def test_stop_string_is_cut_and_never_streamed(model):
    text = model.generate("The quick", raw=True, max_new_tokens=30, sampling=GREEDY).text
    stop = text[5:8]
    pieces = list(model.stream("The quick", raw=True, max_new_tokens=30, sampling=GREEDY, stop=[stop]))
    assert "".join(pieces) == text[: text.index(stop)]


def test_held_back_keeps_possible_stop_prefix():
    assert _held_back("hello wor", ["world"]) == 3
    assert _held_back("hello", ["xyz"]) == 0


def test_streaming_is_utf8_safe(model):
    # random weights emit arbitrary byte tokens; every streamed piece must still be valid text
    opts = SamplingOptions(temperature=1.5, top_k=0, top_p=1.0, seed=11)
    for piece in model.stream("東京 🙂", raw=True, max_new_tokens=64, sampling=opts):
        piece.encode("utf-8")  # raises on lone surrogates


def test_context_overflow_is_a_clear_error(tiny_bundle):
    small = edge.load(tiny_bundle("llama", "fp32"), max_context=32)
    with pytest.raises(edge.EdgeError, match="prompt is .* tokens"):
        small.generate("The quick brown fox " * 20, raw=True, max_new_tokens=8)


def test_chat_drops_oldest_turns_when_full(tiny_bundle):
    model = edge.load(tiny_bundle("llama", "fp32"), max_context=96)
    chat = model.chat()
    for i in range(8):
        "".join(chat.send(f"The quick brown fox number {i}", max_new_tokens=8, sampling=GREEDY))
    assert chat.dropped_turns > 0
    assert chat.messages[-2]["content"] == "The quick brown fox number 7"


def test_sampler_rejects_bad_options():
    with pytest.raises(ValueError, match="top_p"):
        Sampler(SamplingOptions(top_p=0))
    with pytest.raises(ValueError, match="temperature"):
        Sampler(SamplingOptions(temperature=-1))


def test_repetition_penalty_lowers_seen_tokens():
    logits = np.array([2.0, 1.9, -1.0], np.float32)
    s = Sampler(SamplingOptions(temperature=0, repetition_penalty=2.0))
    assert s(logits, seen=[0]) == 1


def test_stream_decoder_holds_back_partial_characters(model):
    ids = model.tokenizer.encode("東京 🙂")
    assert len(ids) > 2, "expected the characters to span several byte-level tokens"
    decoder = model.tokenizer.stream_decoder()
    pieces = [decoder.step(i) for i in ids]
    assert "".join(pieces) == "東京 🙂"
    assert all("\ufffd" not in p for p in pieces)


def test_cuda_without_onnxruntime_gpu_is_a_clear_error(tiny_bundle, monkeypatch):
    """No GPU in CI: --provider cuda, the API's provider="cuda" and --serve all name what is missing."""
    import onnxruntime as ort

    from edge.text.decoder import ProviderError

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(ProviderError) as e:
        edge.load(tiny_bundle("llama", "fp32"), provider="cuda")
    assert "CUDA execution provider" in str(e.value) and "pip install onnxruntime-gpu" in str(e.value)
    with pytest.raises(ProviderError, match="unknown provider 'tpu'"):
        edge.load(tiny_bundle("llama", "fp32"), provider="tpu")
    assert edge.load(tiny_bundle("llama", "fp32"), provider="cpu").decoder.device == "cpu"


def test_cuda_provider_from_the_command_line(tiny_bundle, capsys, monkeypatch):
    import onnxruntime as ort

    from edge.cli import main

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    for mode in (["--prompt", "Hi"], ["--serve", "--port", "0"]):
        code = main(["--model", str(tiny_bundle("llama", "fp32")), "--provider", "cuda", *mode])
        err = capsys.readouterr().err
        assert code != 0 and "onnxruntime-gpu" in err, err
