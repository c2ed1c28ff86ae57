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
