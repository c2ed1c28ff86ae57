"""The llama.cpp peer is checked before it is timed: a build that crashes in eval is named with the fix."""

from __future__ import annotations

from benchmarks import setup_peers


def test_a_crashing_llama_cpp_build_is_reported_with_the_build_flags(tmp_path, monkeypatch):
    monkeypatch.setattr(setup_peers, "_PROBE", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    why = setup_peers.llama_cpp_works(tmp_path / "model.gguf")
    assert "crashed decoding a 6-token prompt (signal 11)" in why
    assert "-DGGML_AVX512=OFF -DGGML_LLAMAFILE=OFF" in why and "llama-cpp-python==0.3.36" in why


def test_a_working_build_passes(tmp_path, monkeypatch):
    monkeypatch.setattr(setup_peers, "_PROBE", "print('ok')")
    assert setup_peers.llama_cpp_works(tmp_path / "model.gguf") is None
