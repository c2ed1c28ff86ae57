"""The bundle loader refuses anything it cannot trust, naming the file and the fix."""

from __future__ import annotations

import json
import shutil

import pytest

import edge
from edge.bundle import FORMAT_VERSION, MODEL_FILE, file_entries, open_bundle, read_manifest, write_manifest
from edge.errors import BundleError


def test_folder_and_model_file_paths_both_work(bundle_copy):
    assert open_bundle(bundle_copy).path == bundle_copy
    assert open_bundle(bundle_copy / "model.onnx").path == bundle_copy


def test_modified_file_is_refused_with_its_name(bundle_copy):
    tok = bundle_copy / "tokenizer.json"
    data = bytearray(tok.read_bytes())
    data[10] ^= 1  # same size, different content
    tok.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"tokenizer\.json: checksum mismatch") as e:
        open_bundle(bundle_copy)
    assert "edge-export" in str(e.value)  # says how to rebuild


def test_checksum_record_does_not_hide_a_later_change(bundle_copy):
    open_bundle(bundle_copy)  # records a successful check
    model = bundle_copy / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-5] ^= 0xFF
    model.write_bytes(bytes(data))  # new mtime, so it is hashed again
    with pytest.raises(BundleError, match="model.onnx: checksum mismatch"):
        open_bundle(bundle_copy)


def test_truncated_model_is_refused(bundle_copy):
    model = bundle_copy / "model.onnx"
    model.write_bytes(model.read_bytes()[:1000])
    with pytest.raises(BundleError, match=r"model\.onnx: size 1000 bytes"):
        open_bundle(bundle_copy)


def test_missing_file_is_refused(bundle_copy):
    (bundle_copy / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match="tokenizer.json: missing"):
        open_bundle(bundle_copy)


def test_newer_format_is_refused(bundle_copy):
    manifest = json.loads((bundle_copy / "edge.json").read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (bundle_copy / "edge.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="newer than this edge understands"):
        open_bundle(bundle_copy)


def test_manifest_entry_outside_bundle_is_refused(bundle_copy):
    manifest = json.loads((bundle_copy / "edge.json").read_text())
    manifest["files"]["../outside.bin"] = {"sha256": "0" * 64, "size": 1}
    (bundle_copy / "edge.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="points outside the bundle"):
        open_bundle(bundle_copy)


def test_bare_onnx_file_is_refused_with_the_fix(tmp_path, bundle_copy):
    bare = tmp_path / "tiny.onnx"
    bare.write_bytes((bundle_copy / "model.onnx").read_bytes())
    with pytest.raises(BundleError, match="bare ONNX file") as e:
        edge.load(bare)
    assert "edge-export" in str(e.value)


def test_malformed_manifest_is_refused(bundle_copy):
    (bundle_copy / "edge.json").write_text("{not json")
    with pytest.raises(BundleError, match="unreadable manifest"):
        open_bundle(bundle_copy)


def _point_external_data(bundle, location: str) -> None:
    """Rewrite model.onnx so its weights live at ``location``, and re-sign the manifest as an attacker would."""
    import onnx

    model = onnx.load(str(bundle / MODEL_FILE), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    (bundle / MODEL_FILE).write_bytes(model.SerializeToString())
    manifest = read_manifest(bundle)
    manifest.files.update(file_entries(bundle, [MODEL_FILE]))
    write_manifest(bundle, manifest)


@pytest.mark.parametrize("location", ["../model.onnx.data", "/etc/hostname", "sub/../../x.data"])
def test_external_data_outside_the_bundle_is_refused(bundle_copy, location):
    shutil.copy(bundle_copy / "model.onnx.data", bundle_copy.parent / "model.onnx.data")
    _point_external_data(bundle_copy, location)
    with pytest.raises(BundleError, match="outside the bundle") as e:
        open_bundle(bundle_copy)
    assert location in str(e.value)


def test_external_data_through_a_symlink_is_refused(bundle_copy, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside") / "weights.data"
    (bundle_copy / "model.onnx.data").rename(outside)
    (bundle_copy / "model.onnx.data").symlink_to(outside)
    with pytest.raises(BundleError, match="outside the bundle"):
        open_bundle(bundle_copy)


def test_external_data_not_in_the_manifest_is_refused(bundle_copy):
    shutil.copy(bundle_copy / "model.onnx.data", bundle_copy / "unlisted.data")
    _point_external_data(bundle_copy, "unlisted.data")
    with pytest.raises(BundleError, match="not listed"):
        open_bundle(bundle_copy)


def test_garbage_model_file_is_refused_before_onnxruntime(bundle_copy):
    (bundle_copy / MODEL_FILE).write_bytes(b"\xff" * 64)
    manifest = read_manifest(bundle_copy)
    manifest.files.update(file_entries(bundle_copy, [MODEL_FILE]))
    write_manifest(bundle_copy, manifest)
    with pytest.raises(BundleError, match="not a readable ONNX model"):
        open_bundle(bundle_copy)


def _edit_manifest(bundle, edit) -> None:
    path = bundle / "edge.json"
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw))


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda m: m.update(files=list(m["files"])), "'files' is a list of"),
        (lambda m: m.update(task=["text-generation"]), "'task' is a list of 1; expected a string"),
        (
            lambda m: m["kv_cache"].update(head_dim=10**12),
            "'kv_cache.head_dim' is 1000000000000; expected an integer from 1 to 4096",
        ),
        (lambda m: m["kv_cache"].update(num_layers=10**6), "'kv_cache.num_layers' is 1000000"),
        (lambda m: m["kv_cache"].update(num_kv_heads=True), "'kv_cache.num_kv_heads' is true; expected an integer"),
        (lambda m: m["kv_cache"].update(past_key="{layer:>999999999}"), "'kv_cache.past_key'"),
        (lambda m: m["tokens"].update(stop_ids=[]), "'tokens.stop_ids' is a list of 0; expected a non-empty list"),
        (lambda m: m["tokens"].update(stop_ids=[10**9]), "'tokens.stop_ids[0]' is 1000000000"),
        (lambda m: m["tokens"].update(bos_id=m["vocab_size"]), "'tokens.bos_id' is"),
        (lambda m: m.update(vocab_size=10**30), "'vocab_size' is 1000000000000000000000000000000"),
        (lambda m: m.update(context_length=-1), "'context_length' is -1; expected an integer from 1 to 10000000"),
        (lambda m: m["files"]["model.onnx"].update(size=-5), "'files.model.onnx.size' is -5"),
        (lambda m: m["files"]["model.onnx"].update(sha256=None), "'files.model.onnx.sha256' is null"),
        (lambda m: m.pop("kv_cache"), "'kv_cache' missing; expected an object"),
        (lambda m: m.update(format_version=True), "'format_version' is true"),
        (lambda m: m["tokens"].update(add_bos=1), "'tokens.add_bos' is 1; expected true or false"),
        (lambda m: m["tokens"].update(add_bos=True, bos_id=None), "'tokens.add_bos' is true; expected false when"),
    ],
)
def test_manifest_field_of_the_wrong_type_or_size_names_the_field(bundle_copy, edit, field):
    _edit_manifest(bundle_copy, edit)
    with pytest.raises(BundleError) as e:
        open_bundle(bundle_copy)
    assert f"edge.json: field {field}" in str(e.value) and "fix: rebuild it with `edge-export" in str(e.value)


def test_unknown_manifest_fields_are_ignored(bundle_copy):
    _edit_manifest(bundle_copy, lambda m: m.update(from_the_future={"x": [1]}) or m["kv_cache"].update(extra=1))
    assert open_bundle(bundle_copy).manifest.kv_cache.num_layers > 0


def test_deeply_nested_or_endless_manifest_is_refused(bundle_copy):
    (bundle_copy / "edge.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BundleError, match="unreadable manifest .*nested"):
        open_bundle(bundle_copy)
    (bundle_copy / "edge.json").unlink()
    (bundle_copy / "edge.json").symlink_to("/dev/zero")  # reads 16 MB, not forever
    with pytest.raises(BundleError, match="unreadable manifest .*over the limit"):
        read_manifest(bundle_copy)


def test_bundle_without_add_bos_loads_and_adds_none(bundle_copy):
    """Bundles written before ``tokens.add_bos`` existed read it as false: prompts unchanged."""
    _edit_manifest(bundle_copy, lambda m: m["tokens"].pop("add_bos", None))
    model = edge.load(bundle_copy)
    assert model.manifest.tokens.add_bos is False
    assert model.encode_prompt("Paris is", 8) == model.tokenizer.encode("Paris is")


def test_add_bos_puts_the_bos_first_once(bundle_copy):
    bos = json.loads((bundle_copy / "edge.json").read_text())["tokens"]["bos_id"]
    _edit_manifest(bundle_copy, lambda m: m["tokens"].update(add_bos=True))
    model = edge.load(bundle_copy)
    plain = model.tokenizer.encode("Paris is")
    assert model.encode_prompt("Paris is", 8) == [bos, *plain]
    # a chat whose template spells the BOS out (ChatML's <|im_start|> is this model's BOS) gets it once
    chat_ids = model.encode_prompt(model.chat_text([{"role": "user", "content": "Hi"}]), 8)
    assert chat_ids[:1] == [bos] and chat_ids[1:2] != [bos]
