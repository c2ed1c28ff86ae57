"""The compact tokenizer copy (edge/text/tokenizer.py): written once, verified, rebuilt when changed, same ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import edge
from edge.bundle import open_bundle
from edge.text.sampling import SamplingOptions
from edge.text.tokenizer import Tokenizer, compact_json
from tests.conftest import CORPUS, ROOT

TEXTS = [*CORPUS[:4], "", "  two  spaces\tand a tab\n", "<|im_start|>user\nhi<|im_end|>\n", "ünïcödé 😀😀 東京"]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("EDGE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "tokenizers"


def copies(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.json"))


def assert_same(a: Tokenizer, b: Tokenizer) -> None:
    assert a.vocab_size == b.vocab_size
    for text in TEXTS:
        ids = a.encode(text)
        assert ids == b.encode(text)
        assert a.decode(ids) == b.decode(ids)


def test_compact_copy_is_written_once_and_reads_the_same(bundle_copy, cache):
    bundle = open_bundle(bundle_copy)
    first = Tokenizer.from_bundle(bundle)
    [copy] = copies(cache)
    sha = bundle.manifest.files["tokenizer.json"].sha256
    assert copy.name.startswith(sha + ".")
    assert "merges" in copy.read_text() and isinstance(json.loads(copy.read_text())["model"]["merges"][0], str)
    assert_same(first, Tokenizer(bundle.tokenizer_path))
    stamp = copy.stat().st_mtime_ns, copy.stat().st_ino
    assert_same(Tokenizer.from_bundle(bundle), first)
    assert copies(cache) == [copy] and (copy.stat().st_mtime_ns, copy.stat().st_ino) == stamp  # not rewritten


@pytest.mark.parametrize("damage", ["edit", "truncate"])
def test_a_changed_copy_is_refused_and_rebuilt(bundle_copy, cache, damage):
    bundle = open_bundle(bundle_copy)
    Tokenizer.from_bundle(bundle)
    [copy] = copies(cache)
    text = copy.read_text()
    if damage == "edit":  # still valid JSON, another tokenizer: a merge dropped
        data = json.loads(text)
        data["model"]["merges"] = data["model"]["merges"][1:]
        copy.write_text(json.dumps(data))
    else:
        copy.write_text(text[: len(text) // 2])
    rebuilt = Tokenizer.from_bundle(bundle)
    assert copies(cache) == [copy] and copy.read_text() == text
    assert_same(rebuilt, Tokenizer(bundle.tokenizer_path))


def test_a_copy_for_another_file_is_not_used(bundle_copy, cache, tmp_path):
    """The copy is named by the bundle file's checksum: a changed tokenizer.json (re-exported) gets its own."""
    bundle = open_bundle(bundle_copy)
    Tokenizer.from_bundle(bundle)
    bundle.manifest.files["tokenizer.json"].sha256 = "0" * 64
    Tokenizer.from_bundle(bundle)
    assert len(copies(cache)) == 2


def test_tokenizers_without_a_compact_form_load_from_the_bundle(cache, tmp_path):
    from tokenizers import Tokenizer as HF
    from tokenizers import models

    assert compact_json(HF(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]")).to_str()) is None
    spaced = json.loads(HF(models.BPE()).to_str())
    spaced["model"].update(vocab={"a": 0, " b": 1, "a b": 2}, merges=[["a", " b"]])
    assert compact_json(json.dumps(spaced)) is None  # "a  b" would not split back into ["a", " b"]
    legacy = dict(spaced)
    legacy["model"] = {**spaced["model"], "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}
    assert compact_json(json.dumps(legacy)) is None  # already compact


def test_an_unwritable_cache_costs_only_speed(bundle_copy, tmp_path, monkeypatch):
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    monkeypatch.setenv("EDGE_CACHE_DIR", str(blocked))
    bundle = open_bundle(bundle_copy, verify=False)
    assert_same(Tokenizer.from_bundle(bundle), Tokenizer(bundle.tokenizer_path))


def test_greedy_output_is_unchanged(bundle_copy, cache, monkeypatch):
    greedy = SamplingOptions(temperature=0)
    model = edge.load(bundle_copy)
    assert copies(cache)
    with_copy = model.generate("The quick brown", raw=True, max_new_tokens=24, sampling=greedy).text
    model.tokenizer = Tokenizer(model.bundle.tokenizer_path)
    model.decoder.rewind(0)
    assert model.generate("The quick brown", raw=True, max_new_tokens=24, sampling=greedy).text == with_copy


SMOLLM2 = ROOT / "benchmarks" / ".bundles" / "smollm2-135m-int4"


@pytest.mark.skipif(not (SMOLLM2 / "edge.json").is_file(), reason="no SmolLM2 bundle in benchmarks/.bundles")
def test_smollm2_eval_text_gets_the_same_ids(cache):
    bundle = open_bundle(SMOLLM2)
    compact, original = Tokenizer.from_bundle(bundle), Tokenizer(bundle.tokenizer_path)
    assert copies(cache)
    text = (ROOT / "export" / "data" / "eval_text.txt").read_text()
    ids = compact.encode(text)
    assert ids == original.encode(text) and len(ids) > 1000
    assert compact.decode(ids) == original.decode(ids)
