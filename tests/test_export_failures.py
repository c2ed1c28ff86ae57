"""A failed or interrupted export leaves nothing half-written and never clobbers a bundle."""

from __future__ import annotations

import pytest

from export import ExportError, export_bundle, pipeline
from export.sources import SourceError


def quiet(_line: str) -> None:
    pass


@pytest.mark.parametrize("exc", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_failure_mid_export_leaves_nothing(tmp_path, hf_folder, monkeypatch, exc):
    def broken(*args, **kwargs):
        raise exc

    monkeypatch.setattr(pipeline, "quantize", broken)
    out = tmp_path / "bundle"
    with pytest.raises(type(exc)):
        export_bundle(str(hf_folder("llama")), out, "int4", progress=quiet)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [], "temporary files were left behind"


def test_existing_bundle_needs_force_and_survives_a_failed_replace(tmp_path, hf_folder, tiny_bundle, monkeypatch):
    out = tmp_path / "bundle"
    export_bundle(str(hf_folder("gpt2")), out, "fp32", progress=quiet)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ExportError, match="already exists"):
        export_bundle(str(hf_folder("gpt2")), out, "fp32", progress=quiet)

    monkeypatch.setattr(pipeline, "quantize", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        export_bundle(str(hf_folder("gpt2")), out, "int4", force=True, progress=quiet)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_unknown_source_names_the_fix(tmp_path):
    with pytest.raises(SourceError, match="not a known alias") as e:
        export_bundle("no-such-model", tmp_path / "b", progress=quiet)
    assert "smollm2-135m" in str(e.value)


def test_unsupported_architecture_is_refused(tmp_path):
    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(SourceError, match="model type 'bert' is not supported"):
        export_bundle(str(folder), tmp_path / "b", progress=quiet)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("arch", ["bert", None])
def test_gguf_of_an_unsupported_type_is_refused(tmp_path, arch):
    import numpy as np
    from gguf import GGUFWriter

    path = tmp_path / "model.gguf"
    if arch is None:
        path.write_bytes(b"GGUF" + b"\x00" * 12)  # a header and nothing else
    else:
        writer = GGUFWriter(str(path), arch)
        writer.add_tensor("token_embd.weight", np.zeros((4, 4), np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    match = f"GGUF architecture '{arch}' is not supported" if arch else "not a readable GGUF file"
    with pytest.raises(SourceError, match=match) as e:
        export_bundle(str(path), tmp_path / "b", progress=quiet)
    assert e.value.hint
    assert not (tmp_path / "b").exists()
