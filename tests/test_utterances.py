"""The request generator on command sets of other domains than the kitchen it was first written for."""

from __future__ import annotations

import json
import random
import re

import pytest

from edge.commands.command_model import request_text
from edge.commands.command_set import CommandSet
from export.utterances import _general, _value_phrases, generate, read_command, vocabulary
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
    assert {"cancel the delay", "end the rain delay", "stop the delay"} <= set(reading.value_phrases[0])
    assert _value_phrases("Set the fan speed; 0 turns it off.", ["fan speed"]) == {0: ["turn it off"]}
    assert _value_phrases("Set the level: 1 is the gentlest, 5 is the strongest.", ["level"]) == {}
    # a described value is an intent of its own: asked for often, and in the description's words
    zero = [e.text.lower() for e in generate(_set("garden-irrigation"), 300, 0)
            if e.command == {"command": "set_rain_delay", "args": {"days": 0}}]  # fmt: skip
    assert len(zero) >= 30 and any(t.startswith(("cancel", "end", "clear", "stop")) for t in zero)
    sensor = read_command(_set("garden-irrigation").commands["set_rain_sensor"])
    assert sensor.pair and sensor.pair[0].startswith("enable") and sensor.pair[1].startswith("disable")


def test_other_devices_for_unknown_are_not_the_sets_own():
    cs = _set("garden-irrigation")
    declined = [ex.text.lower() for ex in generate(cs, 300, 0) if ex.command["command"] == "unknown"]
    assert declined and not any("sprinkler" in t or "lawn mower" in t for t in declined)


def test_general_requests_are_composed_and_never_say_the_sets_words():
    radio = CommandSet.from_dict(
        {
            "commands": {
                "play_radio": {"description": "Play the radio on a station.", "args": {"station": {"enum": ["jazz"]}}},
                "call": {"description": "Call the doctor or grandma.", "args": {}},
                "unknown": {"description": "Anything else.", "args": {}},
            }
        }
    )
    rng, avoid = random.Random(0), vocabulary(radio)
    composed = {_general(rng, avoid) for _ in range(500)}
    assert len(composed) > 200 and len({t for t in composed if "weather" in t}) > 5  # parts, not one phrasing
    assert not any(re.search(r"\b(radio|jazz|doctor|grandma)\b", t) for t in composed)


@pytest.mark.parametrize("name", ["garden-irrigation", "workshop"])
def test_hand_written_dev_requests_are_not_generated(name):
    dev = {json.loads(line)["text"].lower() for line in (SETS / f"{name}.dev.jsonl").read_text().splitlines()}
    generated = {ex.text.lower() for ex in generate(_set(name), 300, 0)}
    # a short plain order ("compressor off") can coincide; the generator holds nothing longer that people wrote
    assert all(len(text.split()) <= 6 for text in dev & generated), dev & generated


# a set of yet another domain where one command's value is another command's name: "heat" is a
# hob setting and the name of set_heat_lamp
NEAR = {
    "name": "bar",
    "description": "A bar counter: the hob, the heat lamp and the music.",
    "commands": {
        "set_hob": {"description": "Choose the hob's setting.", "args": {"setting": {"enum": ["heat", "simmer"]}}},
        "set_heat_lamp": {
            "description": "Set the heat lamp brightness: 0 is off, 5 is the brightest.",
            "args": {"level": {"type": "integer", "minimum": 0, "maximum": 5}},
        },
        "unknown": {"description": "Anything else.", "args": {}},
    },
}


def test_a_value_that_names_another_command_is_said_exactly_and_never_alone():
    cs = CommandSet.from_dict(NEAR)
    examples = generate(cs, per_command=120, seed=0)
    heat = [e.text.lower() for e in examples if e.command == {"command": "set_hob", "args": {"setting": "heat"}}]
    assert len(heat) > 20
    # always with a word of the hob command (name, object, verb) that the lamp command lacks: "heat please" is ambiguous
    assert all(re.search(r"\b(hob|choose|select|setting|switch)", t) for t in heat), [
        t for t in heat if not re.search(r"\b(hob|choose|select|setting|switch)", t)
    ]
    lamp = [e.text.lower() for e in examples if e.command["command"] == "set_heat_lamp"]
    # the lamp is also named without its attribute: "set the heat lamp to 3", not only "... brightness"
    assert any("heat lamp" in t and "brightness" not in t for t in lamp)


def test_a_clashing_value_gets_no_synonym_of_the_other_commands_device():
    panel_like = {
        "name": "p",
        "commands": {
            "set_mode": {"description": "Choose the oven's mode.", "args": {"mode": {"enum": ["fan", "grill"]}}},
            "set_fan_speed": {
                "description": "Set the extractor fan speed.",
                "args": {"speed": {"type": "integer", "minimum": 0, "maximum": 3}},
            },
        },
    }
    examples = generate(CommandSet.from_dict(panel_like), per_command=150, seed=1)
    fan_mode = [e.text.lower() for e in examples if e.command["args"].get("mode") == "fan"]
    # two requests in one breath ("fan mode, then set the extractor fan speed to 1") name the other command itself
    alone = [t for t in fan_mode if not re.search(r"\b(and|then)\b", t)]
    assert alone and not any(re.search(r"\b(extractor|vent)\b", t) for t in alone)


def test_bracketed_names_in_a_description_become_ways_to_say_the_thing():
    from export.utterances import glosses

    assert glosses("Turn the air bubbler (air pump) on or off.") == [("the air bubbler", ["air pump"])]
    assert glosses("Set the light: daylight, moonlight (a dim blue night light) or off.") == [
        ("moonlight", ["dim blue night light", "night light"])
    ]
    # numbers and asides are not names
    assert glosses("Set the hour (0 to 23) at which it starts (for example after rain).") == []
    cs = CommandSet.from_dict(
        {
            "name": "tank",
            "commands": {
                "set_light": {"description": "Set the light: day, moon (night light) or off.",
                              "args": {"mode": {"enum": ["day", "moon", "off"]}}},
                "set_bubbler": {"description": "Turn the air bubbler (air pump) on or off.",
                                "args": {"on": {"type": "boolean"}}},
                "unknown": {"description": "Not one of the commands above.", "args": {}},
            },
        }
    )  # fmt: skip
    data = generate(cs, per_command=200, seed=0)
    moon = [ex.text.lower() for ex in data if ex.command == {"command": "set_light", "args": {"mode": "moon"}}]
    bubbler = [ex.text.lower() for ex in data if ex.command["command"] == "set_bubbler"]
    assert any("night light" in t for t in moon) and any("moon" in t for t in moon)
    assert any("air pump" in t for t in bubbler) and any("bubbler" in t for t in bubbler)


def test_shares_are_also_said_in_words():
    cs = CommandSet.from_dict(
        {
            "name": "tank",
            "commands": {
                "log_change": {"description": "Record a water change, in percent of the tank.",
                               "args": {"percent": {"type": "integer", "minimum": 5, "maximum": 100}}},
                "unknown": {"description": "Not one of the commands above.", "args": {}},
            },
        }
    )  # fmt: skip
    data = [ex for ex in generate(cs, per_command=300, seed=0) if ex.command["command"] == "log_change"]
    assert any("half" in ex.text.lower() and ex.command["args"]["percent"] == 50 for ex in data)
    assert any("quarter" in ex.text.lower() and ex.command["args"]["percent"] == 25 for ex in data)
    assert not any("quarter" in ex.text.lower() and ex.command["args"]["percent"] not in (25, 75) for ex in data)


def test_a_plural_argument_name_is_what_is_counted():
    cs = CommandSet.from_dict(
        {
            "name": "tank",
            "commands": {
                "feed_fish": {"description": "Drop food now; portions is how many servings.",
                              "args": {"portions": {"type": "integer", "minimum": 1, "maximum": 3}}},
                "unknown": {"description": "Not one of the commands above.", "args": {}},
            },
        }
    )  # fmt: skip
    data = [ex for ex in generate(cs, per_command=300, seed=0) if ex.command["command"] == "feed_fish"]
    said = " ".join(ex.text.lower() for ex in data)
    assert "2 portions" in said or "two portions" in said
    assert "servings" in said and ("1 portion" in said or "one portion" in said or "1 serving" in said)
    assert not any(re.search(r"\bmax\b|\bhalfway\b", ex.text.lower()) for ex in data)  # counts, not levels


def test_owners_on_and_off_and_questions_about_the_sets_own_things():
    """The owner of what is set names it ("set the heater to 24"); "on" in a list of choices with an "off" is its
    first other value; and a question about what a thing is, not how it is, is declined."""
    from export.utterances import things

    cs = CommandSet.from_dict(
        {
            "name": "tank",
            "commands": {
                "set_water_temperature": {"description": "Set the heater's target water temperature in degrees.",
                                          "args": {"celsius": {"type": "integer", "minimum": 18, "maximum": 32}}},
                "set_light": {"description": "Set the tank light: day, moon or off.",
                              "args": {"mode": {"enum": ["day", "moon", "off"]}}},
                "unknown": {"description": "Not one of the commands above.", "args": {}},
            },
        }
    )  # fmt: skip
    readings = [read_command(c) for c in cs.commands.values() if c.name != "unknown"]
    assert "the heater" in readings[0].obj
    assert things(readings) == ["heater", "tank light"]  # not "water temperature", a setting of the heater
    data = generate(cs, per_command=300, seed=0)
    alone = [ex for ex in data if not re.search(r"\b(and|then)\b", ex.text.lower())]  # not two requests in one
    heater = [ex for ex in alone if "heater" in ex.text.lower() and "'s" not in ex.text]
    assert heater and all(ex.command["command"] in ("set_water_temperature", "unknown") for ex in heater)
    on = [ex.command for ex in alone if re.search(r"\blight on\b|\bturn on the tank light\b", ex.text.lower())]
    assert on and all(c == {"command": "set_light", "args": {"mode": "day"}} for c in on)
    asked = [ex for ex in data if re.search(r"^how does a (heater|tank light) work", ex.text.lower())]
    assert asked and all(ex.command["command"] == "unknown" for ex in asked)


def test_a_complaint_comes_only_before_turning_up_or_on():
    """ "it's too dark" before "tank light off" would teach the inversion people complain about."""
    cs = CommandSet.from_dict(
        {
            "name": "tank",
            "commands": {
                "set_light": {"description": "Set the tank light: day, moon or off.",
                              "args": {"mode": {"enum": ["day", "moon", "off"]}}},
                "unknown": {"description": "Not one of the commands above.", "args": {}},
            },
        }
    )  # fmt: skip
    data = generate(cs, per_command=300, seed=0)
    complaints = [ex for ex in data if re.search(r"too dark|can't see|it's dark", ex.text.lower())]
    assert complaints and all(ex.command["args"]["mode"] != "off" for ex in complaints)


GREENHOUSE = {
    "name": "greenhouse",
    "commands": {
        "set_bed_heat": {"description": "Set one bed's heating mat in degrees Celsius.",
                         "args": {"bed": {"enum": ["seedlings", "tomatoes"]},
                                  "celsius": {"type": "integer", "minimum": 10, "maximum": 30}}},
        "water_for": {"description": "Water the beds for a number of minutes.",
                      "args": {"minutes": {"type": "integer", "minimum": 1, "maximum": 60}}},
        "status": {"description": "Report each bed's temperature and the soil moisture.", "args": {}},
        "unknown": {"description": "Not one of the commands above.", "args": {}},
    },
}  # fmt: skip


def test_a_status_is_asked_after_by_what_its_measures_feel_like():
    data = generate(CommandSet.from_dict(GREENHOUSE), per_command=600, seed=0)
    felt = [
        ex
        for ex in data
        if re.search(r"\bhow (warm|hot|cold|chilly|wet|dry|damp) is\b", ex.text.lower())
        and not re.search(r"\b(and|then) how\b", ex.text.lower())
    ]  # two requests in one: the first is done
    assert felt and all(ex.command["command"] == "status" for ex in felt)
    said = " ".join(ex.text.lower() for ex in felt)
    assert "the soil" in said and ("the seedlings" in said or "the tomatoes" in said)  # a bed by its name


def test_a_phones_jobs_are_declined_unless_the_set_has_a_timer_of_its_own():
    jobs = r"\b(timer|alarm|remind me|stopwatch)\b"
    data = generate(CommandSet.from_dict(GREENHOUSE), per_command=300, seed=0)
    asked = [ex for ex in data if re.search(jobs, ex.text.lower())]
    assert asked and all(ex.command["command"] == "unknown" for ex in asked)
    assert any(re.search(r"\bremind me in\b", ex.text.lower()) for ex in asked)  # not a watering time
    # the set says "minutes" (water_for), yet a phone's timer keeps its minutes and is still declined
    assert any(re.search(r"\btimer for \w+ minutes\b", ex.text.lower()) for ex in asked)
    with_timer = json.loads(json.dumps(GREENHOUSE))
    with_timer["commands"]["start_timer"] = {
        "description": "Start a kitchen timer for a number of minutes.",
        "args": {"minutes": {"type": "integer", "minimum": 1, "maximum": 120}},
    }
    data = generate(CommandSet.from_dict(with_timer), per_command=300, seed=0)
    declined = [ex for ex in data if ex.command["command"] == "unknown" and re.search(jobs, ex.text.lower())]
    assert not any(re.search(r"remind me in|set a timer for", ex.text.lower()) for ex in declined)


def test_a_status_is_asked_after_by_its_measure_with_the_owner_as_subject():
    data = generate(CommandSet.from_dict(GREENHOUSE), per_command=600, seed=0)
    asked = [ex for ex in data if re.match(r"(what|which) (temperature|moisture) is the (bed|soil)\b", ex.text.lower())]
    assert asked and all(ex.command["command"] == "status" for ex in asked)
