"""edge-run and edge-export as a user runs them: subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def run(*args: str, stdin: str | None = None, env: dict | None = None, cwd=ROOT) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", "import sys; from edge.cli import main; sys.exit(main(sys.argv[1:]))", *args]
    return subprocess.run(
        cmd, input=stdin, capture_output=True, text=True, cwd=cwd, timeout=300, env={**os.environ, **(env or {})}
    )


def test_json_output_has_the_documented_fields(tiny_bundle):
    r = run(
        "--model",
        str(tiny_bundle("llama", "fp32") / "model.onnx"),
        "--prompt",
        "Paris is",
        "--temperature",
        "0",
        "--max-new-tokens",
        "8",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for key in ("text", "prompt_tokens", "new_tokens", "load_s", "ttft_s", "decode_tokens_per_s", "peak_rss_mb"):
        assert key in out
    assert out["new_tokens"] <= 8 and out["prompt_tokens"] > 0 and out["peak_rss_mb"] > 0


def test_prompt_from_stdin_streams_text(tiny_bundle):
    r = run("--model", str(tiny_bundle("gpt2", "int4")), "--raw", "-n", "5", "--seed", "1", stdin="The quick")
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("\n")


def test_same_seed_same_output_from_cli(tiny_bundle):
    args = (
        "--model",
        str(tiny_bundle("llama", "int8")),
        "--prompt",
        "Hello",
        "-n",
        "12",
        "--seed",
        "42",
        "--temperature",
        "1.0",
    )
    assert run(*args).stdout == run(*args).stdout


def test_missing_model_is_a_one_line_error(tmp_path):
    r = run("--model", str(tmp_path / "nope"), "--prompt", "hi")
    assert r.returncode == 1
    assert "no such file or folder" in r.stderr and "Traceback" not in r.stderr


def test_bad_sampling_option_is_a_clear_error(tiny_bundle):
    r = run("--model", str(tiny_bundle("llama", "fp32")), "--prompt", "hi", "--top-p", "0")
    assert r.returncode == 1 and "top_p" in r.stderr and "Traceback" not in r.stderr


def test_no_model_and_no_default_bundle_prints_the_build_command(tmp_path):
    # hide the export package so the CLI cannot build the bundle itself
    shim = tmp_path / "shim"
    (shim / "export").mkdir(parents=True)
    (shim / "export" / "__init__.py").write_text("raise ImportError('export extra not installed')\n")
    env = {"EDGE_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": f"{shim}{os.pathsep}{ROOT}"}
    r = run("--prompt", "hi", env=env, cwd=tmp_path)
    assert r.returncode == 1
    assert "edge-export smollm2-135m" in r.stderr


def test_chat_answers_and_exits_on_eof(tiny_bundle):
    r = run(
        "--model", str(tiny_bundle("llama", "fp32")), "--chat", "-n", "6", "--seed", "0", stdin="hello\nhow are you\n"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("> ") >= 2


@pytest.mark.parametrize("cli", ["edge.cli", "export.cli"])
def test_help_teaches_with_examples(cli):
    r = subprocess.run([sys.executable, "-m", cli, "--help"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "examples:" in r.stdout
