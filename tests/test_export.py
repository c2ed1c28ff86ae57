"""Export -> bundle -> run, on tiny random llama and GPT-2 models, for every precision."""

from __future__ import annotations

import json

import numpy as np
import pytest

import edge
from edge.bundle import PRECISIONS, open_bundle
from edge.decoder import OnnxDecoder
from edge.generate import generate
from edge.sampling import Sampler, SamplingOptions

FAMILIES = ["llama", "gpt2"]


def torch_greedy(folder, ids: list[int], n: int) -> list[int]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    out = list(ids)
    with torch.no_grad():
        for _ in range(n):
            out.append(int(model(torch.tensor([out])).logits[0, -1].argmax()))
    return out[len(ids) :]


def edge_greedy(model, ids: list[int], n: int) -> list[int]:
    sampler = Sampler(SamplingOptions(temperature=0))
    return list(generate(model.decoder, ids, sampler, n, stop_ids=set(), context_length=512))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("precision", PRECISIONS)
def test_export_writes_a_complete_bundle(tiny_bundle, family, precision):
    path = tiny_bundle(family, precision)
    bundle = open_bundle(path)
    m = bundle.manifest
    assert m.precision == precision and m.family == family and m.task == "text-generation"
    assert {"model.onnx", "tokenizer.json", "report.json"} <= set(m.files)
    assert m.kv_cache.num_layers == 2 and m.kv_cache.head_dim == 16
    assert m.stop_ids if hasattr(m, "stop_ids") else m.tokens.stop_ids
    report = json.loads((path / "report.json").read_text())
    assert report["precision"] == precision and report["eval_tokens"] >= 128
    assert report["fp32_vs_source_max_abs_logit_diff"] < 1e-3
    if precision == "fp32":
        assert report["top1_agreement"] == 1.0
    else:
        assert report["size_bytes"] < report["fp32_size_bytes"]
    assert not list(path.parent.glob(".*partial*")), "temporary folders were left behind"
    # every precision runs and produces text
    greedy = SamplingOptions(temperature=0)
    text = edge.load(path).generate("The quick", raw=True, max_new_tokens=8, sampling=greedy).text
    assert isinstance(text, str)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("capacity", [256, 3])  # 3: the KV buffers must grow several times
def test_fp32_greedy_matches_torch(hf_folder, tiny_bundle, family, capacity, monkeypatch):
    monkeypatch.setattr(OnnxDecoder, "INITIAL_CAPACITY", capacity)
    model = edge.load(tiny_bundle(family, "fp32"))
    ids = model.tokenizer.encode("Paris is the capital of")
    assert edge_greedy(model, ids, 24) == torch_greedy(hf_folder(family), ids, 24)


def test_cache_reuse_gives_same_logits_as_fresh_prefill(tiny_bundle):
    model = edge.load(tiny_bundle("llama", "fp32"))
    ids = model.tokenizer.encode("The quick brown fox jumps over the lazy dog.")
    fresh = model.decoder.forward(ids)
    model.decoder.rewind(4)  # keep a prefix, re-feed the rest as one chunk
    np.testing.assert_allclose(model.decoder.forward(ids[4:]), fresh, atol=1e-4)
    model.decoder.rewind(0)
    for t in ids[:-1]:
        model.decoder.forward([t])
    np.testing.assert_allclose(model.decoder.forward(ids[-1:]), fresh, atol=1e-4)


def test_chat_template_is_carried_into_the_bundle(tiny_bundle):
    m = open_bundle(tiny_bundle("llama", "fp32")).manifest
    assert m.chat_template is not None
    text = m.chat_template.render([{"role": "user", "content": "hi"}])
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    # <|im_end|> ends an assistant turn, so it must stop generation
    assert m.tokens.stop_ids
    assert open_bundle(tiny_bundle("gpt2", "fp32")).manifest.chat_template is None


def test_bundle_files_are_readable_by_others(tiny_bundle):
    # a board runs edge as an unprivileged service user, not as the user who exported
    for path in tiny_bundle("llama", "int4").iterdir():
        assert path.stat().st_mode & 0o004, f"{path.name} is not world-readable"
