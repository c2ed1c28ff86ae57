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
    assert r.returncode == 2 and "argument --top-p: 0 is out of range" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "flag, value, expected",
    [
        ("--port", "70000", "an integer from 0 to 65535"),
        ("--threads", "5000", "an integer from 1 to"),
        ("--threads", "0", "an integer from 1 to"),
        ("--max-new-tokens", "0", "an integer from 1 to"),
        ("--max-new-tokens", "-5", "an integer from 1 to"),
        ("--max-context", "0", "an integer from 1 to"),
        ("--temperature", "-0.5", "a number >= 0"),
        ("--temperature", "nan", "a number >= 0"),
        ("--top-p", "1.5", "a number above 0 and at most 1"),
        ("--top-k", "-1", "an integer from 0 to"),
        ("--repetition-penalty", "0", "a number above 0"),
        ("--seed", "-1", "an integer from 0 to"),
        ("--duration", "inf", "a number above 0"),
        ("--port", "eighty", "'eighty' is not an integer"),
    ],
)
def test_numeric_flags_out_of_range_are_usage_errors(capsys, flag, value, expected):
    from edge.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--prompt", "hi", flag, value])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"edge-run: error: argument {flag}" in err and expected in err


def test_invalid_utf8_in_prompt_and_chat_is_text(tiny_bundle):
    # argv and a terminal hand Python undecodable bytes as lone surrogates; the tokenizer cannot encode those
    model = str(tiny_bundle("llama", "fp32"))
    cmd = [sys.executable, "-m", "edge.cli", "--model", model, "-n", "3", "--seed", "0"]
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    for extra, stdin in (([b"--prompt", b"caf\xe9 \xff", b"--stop", b"\xfe"], b""), (["--chat"], b"caf\xe9\n")):
        r = subprocess.run(cmd + extra, input=stdin, capture_output=True, cwd=ROOT, timeout=300, env=env)
        assert r.returncode == 0 and b"Traceback" not in r.stderr, r.stderr.decode(errors="replace")


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


def test_a_reader_that_stops_early_is_a_normal_end(tiny_bundle):
    """`edge-run ... | head -c 1`: exit 0 and no traceback, without SIGPIPE's default action."""
    model = str(tiny_bundle("llama", "fp32"))
    cmd = [sys.executable, "-c", "import sys; from edge.cli import main; sys.exit(main(sys.argv[1:]))"]
    args = ["--model", model, "--raw", "--prompt", "Paris is", "--temperature", "0", "-n", "5000"]
    p = subprocess.Popen([*cmd, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert p.stdout.read(1)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=300) == 0, err
    assert "Traceback" not in err and "Exception ignored" not in err


def test_main_leaves_sigpipe_as_it_found_it(tiny_bundle, capsys):
    """main() called in-process must not make a later broken socket kill the caller (exit 141)."""
    import signal

    from edge.cli import main

    before = signal.getsignal(signal.SIGPIPE)
    assert main(["--model", str(tiny_bundle("llama", "fp32")), "--raw", "--prompt", "hi", "-n", "2"]) == 0
    assert signal.getsignal(signal.SIGPIPE) == before
