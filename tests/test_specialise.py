"""Specialising a model for a command set: the request generator, and a whole run on a tiny random model.

The generator is checked on a set with every argument type; the end-to-end run fine-tunes the
tiny llama on a two-command set until it has learned it, exports it, and drives the bundle
through ``edge-run`` with no torch. The real SmolLM2 run is in test_integration_smollm2.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter

import pytest

from edge.bundle import COMMANDS_FILE, open_bundle
from edge.commands.command_set import CommandSet
from export.pipeline import ExportError, export_bundle
from export.specialise import Recipe, Specialisation
from export.utterances import generate, number_words, split
from tests.conftest import ROOT, run_lean_cli
from tests.test_commands import PANEL, REFERENCE

SWITCH = {
    "name": "switch",
    "description": "One lamp.",
    "commands": {
        "lamp_on": {"description": "Switch the lamp on.", "args": {}},
        "lamp_off": {"description": "Switch the lamp off.", "args": {}},
    },
}


@pytest.fixture(scope="module")
def panel() -> CommandSet:
    return CommandSet.from_dict(PANEL)


@pytest.mark.parametrize(
    "n, words",
    [(0, "zero"), (13, "thirteen"), (40, "forty"), (85, "eighty five"), (185, "one hundred and eighty five"),
     (200, "two hundred"), (1000, "one thousand")],
)  # fmt: skip
def test_number_words(n, words):
    assert number_words(n) == words


def test_every_generated_request_is_a_valid_command(panel):
    data = generate(panel, per_command=60, seed=1)
    for ex in data:
        panel.validate(ex.command)
        assert ex.text == " ".join(ex.text.split()) and ex.text
    counts = Counter(ex.command["command"] for ex in data)
    assert set(counts) == set(panel.commands)
    assert len({ex.text.lower() for ex in data}) == len(data)


def test_same_seed_same_requests_other_seed_other_requests(panel):
    a, b, c = (generate(panel, 40, seed) for seed in (7, 7, 8))
    assert a == b
    assert a != c


def test_numbers_come_as_digits_and_as_words(panel):
    temps = [ex for ex in generate(panel, 150, 0) if ex.command["command"] == "set_temp"]
    assert any(str(ex.command["args"]["celsius"]) in ex.text for ex in temps)
    assert any(number_words(ex.command["args"]["celsius"]) in ex.text.lower() for ex in temps)


def test_out_of_domain_requests_only_when_the_set_can_decline():
    with_unknown = generate(CommandSet.from_dict(PANEL), 30, 0)
    assert any(ex.command["command"] == "unknown" for ex in with_unknown)
    assert {ex.command["command"] for ex in generate(CommandSet.from_dict(SWITCH), 30, 0)} == {"lamp_on", "lamp_off"}


@pytest.mark.skipif(not REFERENCE.is_file(), reason="the reference command set lives in ../shared/commands")
def test_reference_set_gets_indirect_and_polite_requests():
    cs = CommandSet.from_file(REFERENCE)
    data = generate(cs, 300, 0)
    single = [ex for ex in data if not re.search(r" and |then ", ex.text)]  # compounds do their first request
    dark = [ex for ex in single if re.search(r"\btoo dark\b", ex.text.lower())]
    assert dark and all(ex.command["command"] == "set_light" and ex.command["args"]["on"] for ex in dark)
    assert any(ex.text.lower().startswith(("please", "could you", "can you")) for ex in data)
    # "0 is off" in the fan's description: "turn off the fan" is speed 0, not the oven
    fan_off = [ex for ex in data if ex.command == {"command": "set_fan_speed", "args": {"speed": 0}}]
    assert any(" off" in ex.text for ex in fan_off)


def test_validation_split_is_held_out(panel):
    train, val = split(generate(panel, 50, 0), 0.2)
    assert val and not {ex.text for ex in train} & {ex.text for ex in val}


@pytest.fixture(scope="module")
def switch_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sets") / "switch.json"
    path.write_text(json.dumps(SWITCH))
    return path


# enough for a 2-layer random model to learn two commands: every weight trained, briskly
TINY_RECIPE = Recipe(
    seed=3, per_command=60, validation=0.2, epochs=12, batch_size=8, learning_rate=1e-2, train_layers=0
)


@pytest.fixture(scope="module")
def specialised(tmp_path_factory, hf_folder, switch_file):
    out = tmp_path_factory.mktemp("specialised") / "switch"
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as mp:  # a cache of its own: this run must train, not reuse
        mp.setenv("EDGE_CACHE_DIR", str(tmp_path_factory.mktemp("specialise-cache")))
        result = export_bundle(
            str(hf_folder("llama")), out, "fp32", progress=lines.append,
            specialisation=Specialisation(switch_file, TINY_RECIPE),
        )  # fmt: skip
    return result, lines


def test_specialised_bundle_carries_its_set_and_recipe(specialised, switch_file):
    result, lines = specialised
    bundle = open_bundle(result.path)
    info = bundle.manifest.commands
    assert info is not None and COMMANDS_FILE in bundle.manifest.files
    assert bundle.commands_path.read_bytes() == switch_file.read_bytes()
    assert info.sha256 == CommandSet.from_file(switch_file).sha256
    assert info.training["recipe"]["seed"] == 3 and info.training["steps"] > 0
    assert any(line.startswith("[9/9]") for line in lines)  # progress counts the extra stages


def test_tiny_model_learns_the_set(specialised):
    # measured on held-out requests by edge's own runtime on the written bundle
    info = open_bundle(specialised[0].path).manifest.commands
    assert info.training["validation_accuracy"] >= 0.85, info.training
    assert info.training["passed"] is (info.training["validation_accuracy"] >= info.training["min_accuracy"])
    assert info.training["validation_teacher_forced_exact_before"] <= 0.6, info.training  # it did not know before


def test_edge_run_uses_the_bundles_own_set_without_torch(specialised):
    # the description's own words: how well the tiny model generalises is test_tiny_model_learns_the_set's to say
    r = run_lean_cli("--model", str(specialised[0].path), "--prompt", "switch the lamp off")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"command": "lamp_off", "args": {}}


def test_the_assistant_answers_with_a_chat_model_not_a_specialised_one(specialised, tiny_bundle):
    import argparse

    import edge
    from edge.assistant import Answerer
    from edge.cli import _answer_model
    from edge.errors import EdgeError

    command_model = edge.load(specialised[0].path)
    with pytest.raises(EdgeError, match="answers only with commands"):
        Answerer(command_model)  # it would say a command's JSON aloud
    chat_path = str(tiny_bundle("llama", "fp32"))
    args = argparse.Namespace(answer_model=chat_path, threads=1, max_context=None, provider="cpu")
    answers = _answer_model(args, command_model)
    assert answers.manifest.commands is None and Answerer(answers)
    chat = edge.load(tiny_bundle("llama", "fp32"))
    assert _answer_model(argparse.Namespace(answer_model=None), chat) is chat  # a chat model answers itself


def test_another_set_falls_back_to_prompting_with_a_note(specialised, tmp_path):
    other = tmp_path / "panel.json"
    other.write_text(json.dumps(PANEL))
    r = run_lean_cli("--model", str(specialised[0].path), "--commands", str(other), "--prompt", "kitchen light on")
    assert r.returncode == 0, r.stderr
    CommandSet.from_dict(PANEL).validate(json.loads(r.stdout))
    assert "was specialised for 'switch'" in r.stderr


def test_same_seed_same_model_and_a_finished_fine_tune_is_reused(hf_folder, switch_file, tmp_path, monkeypatch):
    recipe = Recipe(seed=5, per_command=10, epochs=2, batch_size=4, train_layers=1)
    weights, logs = [], []
    for name, cache in [("a", "cache-a"), ("b", "cache-b"), ("c", "cache-b")]:
        monkeypatch.setenv("EDGE_CACHE_DIR", str(tmp_path / cache))
        lines: list[str] = []
        result = export_bundle(
            str(hf_folder("llama")), tmp_path / name, "fp32", progress=lines.append,
            specialisation=Specialisation(switch_file, recipe),
        )  # fmt: skip
        weights.append(open_bundle(result.path).manifest.files["model.onnx.data"].sha256)
        logs.append("\n".join(lines))
    assert weights[0] == weights[1] == weights[2]  # two fresh trainings agree; the third reused the second's
    assert "reusing the fine-tuned weights" not in logs[1]
    assert "reusing the fine-tuned weights" in logs[2] and "step " not in logs[2]


def test_a_base_without_chat_template_is_refused_and_leaves_nothing(hf_folder, switch_file, tmp_path):
    out = tmp_path / "gpt2-switch"
    with pytest.raises(ExportError, match="chat template"):
        export_bundle(
            str(hf_folder("gpt2")), out, "fp32", progress=lambda _: None, specialisation=Specialisation(switch_file)
        )
    assert list(tmp_path.iterdir()) == []


def test_cli_help_and_bad_set(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "export.cli", "specialise", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert r.returncode == 0 and "--commands" in r.stdout and "seed" in r.stdout
    bad = tmp_path / "bad.json"
    bad.write_text('{"commands": {"x y": {}}}')
    r = subprocess.run(
        [sys.executable, "-m", "export.cli", "specialise", "--commands", str(bad), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 1 and "commands.x y" in r.stderr and not (tmp_path / "o").exists()


def test_int4_keeps_the_tuned_layers_at_8_bits(hf_folder, switch_file, tmp_path, monkeypatch):
    import onnx

    monkeypatch.setenv("EDGE_CACHE_DIR", str(tmp_path / "cache"))
    recipe = Recipe(seed=5, per_command=10, epochs=1, batch_size=4, train_layers=1)
    result = export_bundle(
        str(hf_folder("llama")), tmp_path / "int4", "int4", progress=lambda _: None,
        specialisation=Specialisation(switch_file, recipe),
    )  # fmt: skip
    graph = onnx.load(str(result.path / "model.onnx"), load_external_data=False).graph
    bits = {n.name.split(".")[1]: a.i for n in graph.node if n.op_type == "MatMulNBits" and n.name.startswith("layers.")
            for a in n.attribute if a.name == "bits"}  # fmt: skip
    assert bits == {"0": 4, "1": 8}  # the tiny model has 2 layers; the top one was trained


def test_accuracy_gate_warns_and_strict_leaves_nothing(hf_folder, switch_file, tmp_path, monkeypatch):
    from export.pipeline import QualityGateError

    monkeypatch.setenv("EDGE_CACHE_DIR", str(tmp_path / "cache"))
    recipe = Recipe(seed=5, per_command=10, epochs=1, batch_size=4, train_layers=1)
    lines: list[str] = []
    warned = export_bundle(
        str(hf_folder("llama")), tmp_path / "warned", "fp32", progress=lines.append,
        specialisation=Specialisation(switch_file, recipe, min_accuracy=1.01),  # a gate no bundle passes
    )  # fmt: skip
    training = open_bundle(warned.path).manifest.commands.training
    assert training["passed"] is False and training["min_accuracy"] == 1.01
    assert any(line.startswith("WARNING: the specialised bundle maps only") for line in lines)
    with pytest.raises(QualityGateError, match="held-out requests"):
        export_bundle(
            str(hf_folder("llama")), tmp_path / "strict", "fp32", progress=lambda _: None,
            specialisation=Specialisation(switch_file, recipe, min_accuracy=1.01, strict=True),
        )  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "warned"]  # nothing at the strict --out


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_training_on_a_speech_models_transcripts_is_recorded_and_edge_run_pairs_them(
    hf_folder, switch_file, whisper_bundle, tmp_path, monkeypatch
):
    """The whole specialise run with the speech step: generated requests spoken by espeak-ng voices,
    transcribed by a (tiny, random) Whisper bundle, trained on; the manifest names that bundle and
    edge-run --audio uses it without --asr-model."""
    from edge.commands.command_model import paired_speech_model

    monkeypatch.setenv("EDGE_CACHE_DIR", str(tmp_path / "cache"))  # no default speech bundle to fall back on
    speech = tmp_path / "whisper"
    shutil.copytree(whisper_bundle("int8"), speech)
    recipe = Recipe(seed=5, per_command=10, epochs=1, batch_size=4, train_layers=1, heard_per_command=3)
    lines: list[str] = []
    result = export_bundle(
        str(hf_folder("llama")), tmp_path / "heard", "fp32", progress=lines.append,
        specialisation=Specialisation(switch_file, recipe, speech_model=speech),
    )  # fmt: skip
    bundle = open_bundle(result.path)
    training = bundle.manifest.commands.training
    assert training["recipe"]["heard_per_command"] == 3 and training["speech_model"]["path"] == str(speech)
    assert 0 <= training["heard_requests"] <= 6 and any("spoken and transcribed" in line for line in lines)
    assert paired_speech_model(bundle) == (speech, None)

    clip = tmp_path / "lamp.wav"
    subprocess.run(["espeak-ng", "-w", str(clip), "switch the lamp on"], check=True)
    r = run_lean_cli("--model", str(result.path), "--audio", str(clip), "--json")
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)
    assert row["command"] in ("lamp_on", "lamp_off") and "transcript" in row

    (speech / "edge.json").write_text((speech / "edge.json").read_text() + "\n")  # the speech bundle changed
    assert paired_speech_model(open_bundle(result.path))[1].endswith("has changed since")


def test_a_heard_count_without_a_speech_model_is_refused(switch_file):
    with pytest.raises(ExportError, match="needs a speech model"):
        Specialisation(switch_file, Recipe(heard_per_command=5))
