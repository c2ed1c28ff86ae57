"""Architectures without a fused graph go through optimum-onnx, or are refused with the reason.

A tiny random Granite model (llama with scalar multipliers, which edge's builder does not do):
optimum writes the fp32 graph, edge verifies, quantizes and bundles it, and the runtime's
ConcatCacheDecoder decodes it as transformers does over 24 tokens while the cache grows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import edge
from edge.bundle import Manifest, ManifestFieldError
from export import export_bundle, optimum_graph
from export.errors import SourceError
from tests.conftest import _train_tokenizer
from tests.test_export import edge_greedy, torch_greedy

needs_optimum = pytest.mark.skipif(
    not optimum_graph.installed(), reason=f"optimum-onnx is not installed: pip install {optimum_graph.PACKAGE}"
)


def make_granite_folder(folder: Path) -> Path:
    import torch
    from transformers import GraniteConfig, GraniteForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    raw = _train_tokenizer()
    config = GraniteConfig(
        vocab_size=raw.get_vocab_size(),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=raw.token_to_id("<|im_start|>"),
        eos_token_id=raw.token_to_id("<|im_end|>"),
        embedding_multiplier=4.0,
        residual_multiplier=0.5,
        attention_multiplier=0.2,
        logits_scaling=2.0,
        tie_word_embeddings=True,
    )
    model = GraniteForCausalLM(config)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(8.0)  # peaked, varied next-token distributions (see conftest)
    model.save_pretrained(folder)
    PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>", bos_token="<|im_start|>").save_pretrained(
        folder
    )
    return folder


@pytest.fixture(scope="module")
def granite(tmp_path_factory):
    return make_granite_folder(tmp_path_factory.mktemp("hf-granite"))


@needs_optimum
def test_unsupported_architecture_goes_through_optimum(granite, tmp_path, monkeypatch):
    from edge.text.decoder import ConcatCacheDecoder, OnnxDecoder

    said: list[str] = []
    out = tmp_path / "granite"
    export_bundle(str(granite), out, "fp32", progress=said.append)
    assert any("NOTE: edge has no fused graph for 'granite'" in s and "optimum-onnx" in s for s in said)
    report = json.loads((out / "report.json").read_text())
    assert report["fp32_vs_source_max_abs_logit_diff"] < 1e-3
    monkeypatch.setattr(OnnxDecoder, "INITIAL_CAPACITY", 3)
    model = edge.load(out)
    assert model.manifest.family == "granite" and model.manifest.kv_cache.interface == "concat"
    assert isinstance(model.decoder, ConcatCacheDecoder)
    ids = model.tokenizer.encode("Paris is the capital of")
    assert edge_greedy(model, ids, 24) == torch_greedy(granite, ids, 24)
    # a chat turn reuses the cached prefix (rewind), as with edge's own graphs
    first = edge_greedy(model, ids, 4)
    assert edge_greedy(model, ids, 4) == first
    twin = model.fork()  # the server's second stream: same session, a cache of its own
    assert isinstance(twin.decoder, ConcatCacheDecoder) and edge_greedy(twin, ids, 4) == first


@needs_optimum
def test_optimum_graph_quantizes_through_the_gate(granite, tmp_path):
    export_bundle(str(granite), tmp_path / "granite-8", "int8-weight", progress=lambda _: None)
    report = json.loads((tmp_path / "granite-8" / "report.json").read_text())
    assert report["precision"] == "int8-weight" and report["passed"], report


def test_without_optimum_an_unsupported_architecture_is_refused_naming_the_fix(granite, tmp_path, monkeypatch):
    monkeypatch.setattr(optimum_graph, "installed", lambda: False)
    monkeypatch.setattr(optimum_graph, "supports", lambda _: False)
    with pytest.raises(SourceError) as e:
        export_bundle(str(granite), tmp_path / "x", "fp32", progress=lambda _: None)
    text = str(e.value)
    assert "'granite' is not supported" in text and "llama" in text and optimum_graph.PACKAGE in text
    assert not (tmp_path / "x").exists()


def test_kv_cache_interface_is_validated():
    raw = {
        "task": "text-generation", "family": "x", "precision": "fp32", "context_length": 8, "vocab_size": 8,
        "tokens": {"stop_ids": [1]}, "kv_cache": {"num_layers": 1, "num_kv_heads": 1, "head_dim": 4},
        "source": {"kind": "hf-folder", "path": "."}, "files": {},
    }  # fmt: skip
    assert Manifest.from_dict(raw).kv_cache.interface == "edge"  # bundles before the field
    raw["kv_cache"]["interface"] = "paged"
    with pytest.raises(ManifestFieldError, match="'kv_cache.interface' is \"paged\"; expected one of 'edge', 'concat'"):
        Manifest.from_dict(raw)
