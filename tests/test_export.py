"""Export -> bundle -> run, on tiny random llama and GPT-2 models, for every precision."""

from __future__ import annotations

import json

import numpy as np
import pytest

import edge
from edge.bundle import PRECISIONS, open_bundle
from edge.text.decoder import OnnxDecoder
from edge.text.generate import generate
from edge.text.sampling import Sampler, SamplingOptions

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
    assert report["tie_aware_agreement"] >= report["top1_agreement"]  # the gate's measure, beside the raw one
    assert m.kv_cache.dtype == ("float16" if precision == "fp16" else "float32")
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


def test_long_stages_count_their_work_with_an_eta():
    import io
    import time

    from export.progress import Progress

    lines: list[str] = []
    every_step = Progress(lines.append, every=0)
    assert list(every_step.ticker(3, "tokens").over("abc")) == ["a", "b", "c"]
    assert [line.strip().split("  ")[0] for line in lines] == ["1/3 tokens", "2/3 tokens", "3/3 tokens"]
    assert all("ETA" in line for line in lines)

    lines.clear()
    periodic = Progress(lines.append, every=3600)  # not a terminal: a line per period, and the last one
    list(periodic.ticker(100, "steps").over(range(100)))
    assert len(lines) == 1 and lines[0].strip().startswith("100/100 steps")

    terminal = Progress(lines.append)
    terminal.live = io.StringIO()  # a terminal: one line redrawn in place, ended once
    ticker = terminal.ticker(50, "nodes")
    for _ in range(50):
        ticker.step()
        time.sleep(0.005)
    out = terminal.live.getvalue()
    assert out.startswith("\r") and out.endswith("\n") and out.count("\n") == 1 and "50/50 nodes" in out

    lines.clear()
    quiet = Progress(lines.append, total=1, every=0.2)
    with quiet.stage("load"):  # nothing to count: it still says it is alive
        time.sleep(1.3)
    assert any(line.strip().startswith("...") and line.endswith(" s") for line in lines[1:-1]), lines


def test_export_shows_progress_inside_the_long_stages(hf_folder, tmp_path):
    from export import export_bundle

    lines: list[str] = []
    export_bundle(str(hf_folder("llama")), tmp_path / "b", "int4", progress=lines.append)
    counted = [line.strip().split("  ")[0] for line in lines if "ETA" in line]
    assert counted[-1].endswith("tokens") and any(c.endswith("graph nodes") for c in counted), lines


def test_an_exported_default_is_used_instead_of_building_another(tiny_bundle, tmp_path, monkeypatch):
    import shutil

    from edge.bundle import read_manifest, write_manifest
    from edge.cache import DEFAULT_PRECISION, DEFAULT_SOURCE, default_bundle, default_bundle_dir, record_default

    monkeypatch.setenv("EDGE_CACHE_DIR", str(tmp_path / "cache"))
    exported = tmp_path / "bundles" / "smollm2"
    shutil.copytree(tiny_bundle("llama", DEFAULT_PRECISION), exported)
    manifest = read_manifest(exported)
    manifest.source.alias = DEFAULT_SOURCE  # what `edge-export smollm2-135m --out bundles/smollm2` writes
    write_manifest(exported, manifest)
    assert default_bundle() == default_bundle_dir()  # nothing recorded: build in the cache
    record_default("text-generation", exported)
    assert default_bundle() == exported
    (exported / "tokenizer.json").write_text("{}")  # changed since: not trusted, build in the cache instead
    assert default_bundle() == default_bundle_dir()
    shutil.rmtree(exported)
    assert default_bundle() == default_bundle_dir()


def test_only_a_default_build_is_recorded(hf_folder, tmp_path, monkeypatch):
    from edge.cache import default_bundle, default_bundle_dir
    from export import export_bundle

    monkeypatch.setenv("EDGE_CACHE_DIR", str(tmp_path / "cache"))
    export_bundle(str(hf_folder("llama")), tmp_path / "mine", "fp32", progress=lambda _: None)
    assert default_bundle() == default_bundle_dir() and not (tmp_path / "cache" / "defaults.json").exists()


def test_help_teaches_both_forms():
    from export.cli import build_parser

    text = build_parser().format_help()
    assert "edge-export SOURCE --out DIR" in text and "edge-export specialise --commands FILE --out DIR" in text
    assert "edge-export specialise --commands panel.json --out bundles/panel" in text
