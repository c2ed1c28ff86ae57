"""The request generator on command sets of other domains than the kitchen it was first written for."""

from __future__ import annotations

import json
import re

import pytest

from edge.command_model import request_text
from edge.commands import CommandSet
from export.utterances import generate, read_command
from tests.conftest import ROOT

SETS = ROOT / "benchmarks" / "commands"
KITCHEN = {"oven", "kitchen", "bake", "baking", "grill", "broil", "cooker", "timer", "defrost", "hob", "fridge"}


def _set(name: str) -> CommandSet:
    return CommandSet.from_file(SETS / f"{name}.json")


@pytest.fixture(scope="module", params=["garden-irrigation", "workshop"])
def generated(request) -> tuple[CommandSet, list]:
    cs = _set(request.param)
    return cs, generate(cs, per_command=150, seed=0)


def test_every_command_enum_value_and_switch_state_is_asked_for(generated):
    cs, data = generated
    assert {ex.command["command"] for ex in data} == set(cs.commands)
    for c in cs.commands.values():
        for a in c.args:
            said = {json.dumps(ex.command["args"][a.name]) for ex in data if ex.command["command"] == c.name}
            if a.type == "enum":
                assert said == {json.dumps(v) for v in a.enum}, (c.name, a.name)
            if a.type == "boolean":
                assert said == {"true", "false"}, (c.name, a.name)
            if a.type == "integer":
                assert len(said) >= min(5, int(a.maximum - a.minimum) + 1), (c.name, a.name)


def test_requests_are_varied(generated):
    cs, data = generated
    assert len({ex.text.lower() for ex in data}) == len(data)
    for name in cs.commands:
        texts = [ex.text.lower() for ex in data if ex.command["command"] == name]
        # how a request starts and how it is worded, not just which value it carries
        openings = {" ".join(re.sub(r"\d+", "N", t).split()[:2]) for t in texts}
        assert len(openings) / len(texts) >= 0.25, (name, len(openings), len(texts))
        frames = {re.sub(r"\d+", "N", request_text(t)) for t in texts}
        assert len(frames) / len(texts) >= 0.6, name
    polite = sum(ex.text.lower().startswith(("please", "could you", "can you", "would you")) for ex in data)
    questions = sum(ex.text.endswith("?") for ex in data)
    assert polite > len(data) * 0.03 and questions > len(data) * 0.03


def test_no_kitchen_words_leak_into_another_domain(generated):
    cs, data = generated
    leaked = [
        ex.text
        for ex in data
        if ex.command["command"] != cs.unknown and set(re.findall(r"[a-z]+", ex.text.lower())) & KITCHEN
    ]
    assert not leaked, leaked[:5]


def test_numbers_come_as_words_and_digits_and_the_description_is_filled_in():
    cs = _set("garden-irrigation")
    data = [ex for ex in generate(cs, 200, 0) if ex.command["command"] == "water_zone"]
    assert any(re.search(r"\d", ex.text) for ex in data)
    assert any(not re.search(r"\d", ex.text) and request_text(ex.text) != ex.text for ex in data)
    # "Water one zone of the garden now for a number of minutes": the zone and the minutes put in their place
    filled = [ex for ex in data if re.search(r"\bnow for\b", ex.text.lower())]
    assert filled and all(set(ex.command["args"]["zone"].split()) & set(ex.text.lower().split()) for ex in filled)


def test_the_description_says_how_a_value_is_asked_for():
    reading = read_command(_set("garden-irrigation").commands["set_rain_delay"])
    assert reading.value_phrases == {0: ["cancel the delay"]}
    sensor = read_command(_set("garden-irrigation").commands["set_rain_sensor"])
    assert sensor.pair and sensor.pair[0].startswith("enable") and sensor.pair[1].startswith("disable")


def test_other_devices_for_unknown_are_not_the_sets_own():
    cs = _set("garden-irrigation")
    declined = [ex.text.lower() for ex in generate(cs, 300, 0) if ex.command["command"] == "unknown"]
    assert declined and not any("sprinkler" in t or "lawn mower" in t for t in declined)


@pytest.mark.parametrize("name", ["garden-irrigation", "workshop"])
def test_hand_written_dev_requests_are_not_generated(name):
    dev = {json.loads(line)["text"].lower() for line in (SETS / f"{name}.dev.jsonl").read_text().splitlines()}
    generated = {ex.text.lower() for ex in generate(_set(name), 300, 0)}
    # a short plain order ("compressor off") can coincide; the generator holds nothing longer that people wrote
    assert all(len(text.split()) <= 6 for text in dev & generated), dev & generated
