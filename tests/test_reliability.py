"""Faults a panel on a wall meets over months: interrupted exports, full disks, odd prompts, concurrent processes.

Each case ends in a clear message or a recovery, never a traceback or a half-written file.
docs/reliability.md lists every case with the test that proves it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from edge.bundle import TOKENIZER_FILE, file_entries, open_bundle, read_manifest, write_manifest
from edge.errors import BundleError
from export import ExportError, export_bundle, pipeline, verify
from tests.conftest import ROOT, _train_tokenizer

STAGE_HOOKS = [
    (pipeline.sources, "load"),
    (pipeline, "save_model"),
    (verify, "check_fp32"),
    (pipeline, "quantize"),
    (verify, "compare"),
    (pipeline, "write_manifest"),
]


def quiet(_line: str) -> None:
    pass


@pytest.mark.parametrize("module, name", STAGE_HOOKS, ids=[name for _, name in STAGE_HOOKS])
def test_interrupt_at_every_stage_leaves_nothing(tmp_path, hf_folder, monkeypatch, module, name):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, name, interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_bundle(str(hf_folder("llama")), tmp_path / "bundle", "int8", progress=quiet)
    assert list(tmp_path.iterdir()) == []


def test_sigterm_during_export_cleans_up(tmp_path, hf_folder):
    out = tmp_path / "bundle"
    proc = subprocess.Popen(
        [sys.executable, "-m", "export.cli", str(hf_folder("llama")), "--out", str(out), "--precision", "int4"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in proc.stderr:  # wait until the export is under way, then stop it as systemd would
        if line.startswith("[2/6]"):
            break
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 130
    assert "nothing was written" in rest
    assert list(tmp_path.iterdir()) == []


def test_full_disk_is_refused_before_writing(tmp_path, hf_folder, monkeypatch):
    monkeypatch.setattr(pipeline.shutil, "disk_usage", lambda _: SimpleNamespace(free=1000))
    with pytest.raises(ExportError, match="GB free") as e:
        export_bundle(str(hf_folder("llama")), tmp_path / "bundle", "fp32", progress=quiet)
    assert "--out" in e.value.hint
    assert list(tmp_path.iterdir()) == []


def test_tokenizer_that_does_not_match_the_model_is_refused(bundle_copy):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    import edge

    bigger = Tokenizer(models.BPE())
    bigger.pre_tokenizer = pre_tokenizers.ByteLevel()
    bigger.train_from_iterator(
        [f"word{i} token{i * 7}" for i in range(3000)], trainers.BpeTrainer(vocab_size=1500, special_tokens=["<s>"])
    )
    assert bigger.get_vocab_size() > _train_tokenizer().get_vocab_size()
    bigger.save(str(bundle_copy / TOKENIZER_FILE))
    manifest = read_manifest(bundle_copy)
    manifest.files.update(file_entries(bundle_copy, [TOKENIZER_FILE]))
    write_manifest(bundle_copy, manifest)
    with pytest.raises(BundleError, match="tokenizer has .* tokens, the model only"):
        edge.load(bundle_copy)


def edge_run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args], input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=300
    )


def test_empty_prompt_continues_from_the_start_token(tiny_bundle):
    r = edge_run("--model", str(tiny_bundle("llama", "fp32")), "--raw", "--prompt", "", "-n", "4")
    assert r.returncode == 0 and "Traceback" not in r.stderr


def test_control_characters_and_bad_utf8_are_just_text(tiny_bundle):
    bundle = str(tiny_bundle("llama", "fp32"))
    r = edge_run("--model", bundle, "-n", "4", "--prompt", "\x07\x1b[2J\r\u202e tab\tend")
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "edge.cli", "--model", bundle, "-n", "4"],
        input=b"caf\xe9 \x00 \xff\xfe",
        capture_output=True,
        cwd=ROOT,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr


READER = """
import sys, edge
from edge.text.sampling import SamplingOptions
model = edge.load(sys.argv[1])
print(model.generate("Paris is", max_new_tokens=8, sampling=SamplingOptions(temperature=0)).text)
"""


def test_many_readers_of_one_bundle(tiny_bundle, tmp_path):
    env = {**os.environ, "EDGE_CACHE_DIR": str(tmp_path / "cold-cache")}  # every reader hashes and records
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", READER, str(tiny_bundle("llama", "int4"))],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    assert len({out for out, _ in outputs}) == 1  # same greedy text from every process
    json.loads((tmp_path / "cold-cache" / "verified.json").read_text())  # the shared record is whole


BUILDER = """
import sys
import edge.cache, edge.cli
from edge.bundle import TEXT_GENERATION
edge.cache.DEFAULTS[TEXT_GENERATION] = (sys.argv[1], "fp32")
edge.cli.DEFAULTS[TEXT_GENERATION] = (sys.argv[1], "fp32")
print(edge.cli._default_model_path(TEXT_GENERATION))
"""


def test_two_first_runs_build_the_default_bundle_once(hf_folder, tmp_path):
    env = {**os.environ, "EDGE_CACHE_DIR": str(tmp_path / "cache")}
    procs = []
    for _ in range(2):
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", BUILDER, str(hf_folder("llama"))],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        time.sleep(0.5)
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    paths = {out.strip() for out, _ in outputs}
    assert len(paths) == 1
    assert sum("building the default bundle" in err for _, err in outputs) == 1
    open_bundle(paths.pop())  # complete and verified
