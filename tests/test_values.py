"""Numbers a request states narrow what a numeric argument may take (edge/commands/values.py).

The end-to-end checks run the tiny random model: it has no idea which number to write, so any value
it writes that the request did not state would show the grammar let it through.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edge
from edge.commands.command_model import CommandModel, request_text
from edge.commands.command_set import CommandSet
from edge.commands.values import (
    CLOCK,
    MAX_VALUES,
    Stated,
    allowed_values,
    commands_meant,
    is_hour_of_day,
    stated_values,
    unit_of,
)

KITCHEN = CommandSet.from_dict(
    {
        "name": "kitchen",
        "commands": {
            "start_timer": {
                "description": "Start a timer for a number of minutes.",
                "args": {"minutes": {"type": "integer", "minimum": 1, "maximum": 180}},
            },
            "bake": {"description": "Heat the oven.", "args": {"celsius": {"type": "integer", "minimum": 30}}},
            "alarm": {"description": "Wake me at an hour.", "args": {"hour": {"type": "integer", "maximum": 23}}},
            "dim": {"description": "Dim the lamp.", "args": {"level": {"type": "number", "minimum": 0, "maximum": 1}}},
            "rinse": {"description": "Rinse.", "args": {"seconds": {"type": "integer", "minimum": 1, "maximum": 600}}},
            "unknown": {"description": "Anything else.", "args": {}},
        },
    }
)


@pytest.mark.parametrize(
    "request_, stated",
    [
        ("timer for 3 minutes", [Stated(3, "minutes")]),
        ("a 20-minute timer", [Stated(20, "minutes")]),
        ("start a 1 hour timer", [Stated(1, "hours")]),
        ("wake me at 21:00", [Stated(21, CLOCK)]),
        ("wake me at 7:30", [Stated(7, CLOCK), Stated(30, CLOCK)]),
        ("the 3rd zone at -5 degrees", [Stated(3), Stated(-5, "degrees")]),
        ("fan at 40 percent, lathe at 900 rpm", [Stated(40, "percent"), Stated(900, "rpm")]),
        ("dim to 0.25", [Stated(0.25)]),
        ("zone2 and v1.2.3", []),  # inside words and version strings: not values
        ("no numbers here", []),
    ],
)
def test_stated_values(request_, stated):
    assert stated_values(request_) == stated


def test_spelled_numbers_are_stated_once_normalised():
    assert stated_values(request_text("give me a timer for an hour and a half")) == [Stated(90, "minutes")]
    assert stated_values(request_text("bake at one eighty")) == [Stated(180)]


def test_values_fit_each_argument_in_its_own_unit_and_range():
    allowed = allowed_values(KITCHEN, stated_values("set a 2 hour timer and bake at 200"))
    assert allowed[("start_timer", "minutes")] == (120,)  # hours said, minutes counted
    assert allowed[("bake", "celsius")] == (200,)  # 120 minutes is not a temperature: unit-less 2 is too low
    assert allowed[("rinse", "seconds")] == (200,)  # 2 hours is past its 600 s
    assert ("alarm", "hour") not in allowed  # "2 hour" is a length, not an hour of the day; 200 is past 23
    assert allowed_values(KITCHEN, stated_values("wake me at 7"))[("alarm", "hour")] == (7,)
    assert allowed_values(KITCHEN, stated_values("dim to 0.5"))[("dim", "level")] == (0.5,)
    assert ("start_timer", "minutes") not in allowed_values(KITCHEN, stated_values("timer for 1.5 minutes"))


def test_a_measure_fits_only_an_argument_counted_in_it():
    allowed = allowed_values(KITCHEN, stated_values("keep it at 40 degrees"))
    assert allowed == {("bake", "celsius"): (40,)}  # not 40 minutes, 40 seconds or 40 o'clock
    assert allowed_values(KITCHEN, stated_values("dim to 0.5 percent")) == {}  # a level has no unit


def test_a_time_of_day_is_an_hour_and_never_a_length():
    # "at 5 am" is when, not how long: no 5 minute timer, no 5 second rinse
    assert allowed_values(KITCHEN, stated_values(request_text("wake me at five am"))) == {("alarm", "hour"): (5,)}
    assert _meant("run it at 6 every evening") == {"alarm", "unknown"}
    assert allowed_values(KITCHEN, stated_values(request_text("a timer at 6 pm"))) == {("alarm", "hour"): (18,)}


@pytest.mark.parametrize(
    "name, maximum, hour_of_day",
    [("hour", 23, True), ("start_hour", 23, True), ("hour_of_day", 24, True), ("hours", 24, False),
     ("hour", 100, False), ("minutes", 23, False)],
)  # fmt: skip
def test_an_hour_of_the_day_is_named_hour_and_fits_a_day(name, maximum, hour_of_day):
    arg = (
        CommandSet.from_dict(
            {"commands": {"c": {"description": "C.", "args": {name: {"type": "integer", "maximum": maximum}}}}}
        )
        .commands["c"]
        .args[0]
    )
    assert is_hour_of_day(arg) is hour_of_day


def _meant(request: str, commands: CommandSet = KITCHEN) -> set[str] | None:
    stated = stated_values(request_text(request))
    return commands_meant(commands, stated, allowed_values(commands, stated), request_text(request))


def test_a_stated_number_leaves_the_commands_it_fits_and_declining():
    assert _meant("hold the oven at 200") == {"bake", "rinse", "unknown"}
    assert _meant("wake me at seven") == {"start_timer", "alarm", "rinse", "unknown"}
    assert _meant("dim it by 40 percent") is None  # fits nothing, nothing counts percent: the model's to choose
    assert _meant("dim the lamp") is None  # no number stated


def test_a_number_past_what_its_unit_allows_is_declined():
    # "50" copied out of "5000 degrees" would run a command nobody asked for
    assert _meant("pause for three days") == {"unknown"}  # past the timer's 180 minutes and the rinse's 600 s
    assert _meant("start a timer for 500 minutes") == {"unknown"}
    assert _meant("start a timer for 2 hours") == {"start_timer", "unknown"}  # 120 minutes fits
    # however long the number: not cut to its first digits, not a float's "inf" in the grammar
    assert _meant("start a timer for 99999999999999999999999 minutes") == {"unknown"}
    assert _meant(f"start a timer for {'9' * 5000} minutes") == {"unknown"}
    assert allowed_values(KITCHEN, stated_values(f"dim to {'9' * 400}.5")) == {}


def test_a_random_model_declines_a_number_past_its_range(tiny_kitchen):
    assert tiny_kitchen.parse("start a timer for five hundred minutes").command == {"command": "unknown", "args": {}}
    assert tiny_kitchen.parse(f"start a timer for {'9' * 30} minutes").command == {"command": "unknown", "args": {}}
    # longer than the model's context: the model reads its start, the grammar all that was said
    hostile = tiny_kitchen.parse(f"start a timer for {'9' * 5000} minutes")
    assert hostile.command == {"command": "unknown", "args": {}}
    assert hostile.stats.decode_steps == 0  # the grammar declined it: the model had no choice to make


def test_a_share_is_a_percentage_and_nothing_else():
    tank = CommandSet.from_dict(
        {
            "commands": {
                "log_change": {"description": "Log a water change.", "args": {"percent": {"type": "integer"}}},
                "heat": {"description": "Heat the water.", "args": {"celsius": {"type": "integer", "minimum": 18}}},
                "unknown": {"description": "Anything else.", "args": {}},
            }
        }
    )
    assert _meant("I changed a quarter of the water", tank) == {"log_change", "unknown"}  # 25 is no temperature


def test_a_command_that_names_the_number_among_its_choices_stays():
    zones = CommandSet.from_dict(
        {
            "commands": {
                "water": {"description": "Water a zone.", "args": {"minutes": {"type": "integer", "maximum": 60}}},
                "zone_off": {"description": "Switch a zone off.", "args": {"zone": {"enum": ["zone 2", "lawn"]}}},
                "stop": {"description": "Stop.", "args": {}},
            }
        }
    )
    assert _meant("turn off zone two", zones) == {"water", "zone_off"}
    assert _meant("water for 30 minutes", zones) == {"water"}


def test_a_number_and_a_choice_of_one_command_ask_for_it():
    rooms = CommandSet.from_dict(
        {
            "commands": {
                "heat_room": {
                    "description": "Set a room's temperature in degrees Celsius.",
                    "args": {"room": {"enum": ["kitchen", "living room"]}, "celsius": {"type": "integer"}},
                },
                "boost": {"description": "Heat water for minutes.", "args": {"minutes": {"type": "integer"}}},
                "unknown": {"description": "Anything else.", "args": {}},
            }
        }
    )
    assert _meant("drop the living room down to sixteen", rooms) == {"heat_room"}  # a room and a value: not declined
    assert _meant("heat the water for 16", rooms) == {"heat_room", "boost", "unknown"}  # no room: may decline
    assert _meant("the livingroom to 16", rooms) == {"heat_room", "boost", "unknown"}  # a choice is said whole


def test_too_many_numbers_narrow_nothing():
    many = " ".join(str(n) for n in range(1, MAX_VALUES + 2))
    assert ("start_timer", "minutes") not in allowed_values(KITCHEN, stated_values(many))


def test_unit_comes_from_the_name_then_the_description():
    timer = KITCHEN.commands["start_timer"]
    assert unit_of(timer.args[0]) == "minutes"
    oven = KITCHEN.commands["bake"]
    assert unit_of(oven.args[0], oven.description) == "celsius"
    assert unit_of(KITCHEN.commands["dim"].args[0], "Dim the lamp.") is None


def test_narrowed_schema_lists_the_values(tmp_path):
    schema = KITCHEN.json_schema({("start_timer", "minutes"): (60,)})
    timer = next(o for o in schema["anyOf"] if o["properties"]["command"]["const"] == "start_timer")
    assert timer["properties"]["args"]["properties"]["minutes"] == {"enum": [60]}


@pytest.fixture(scope="module")
def tiny_kitchen(tiny_bundle):
    return CommandModel(edge.load(tiny_bundle("llama", "fp32")), KITCHEN)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(minutes=st.integers(1, 180), temperature=st.integers(30, 300), filler=st.sampled_from(["", "please ", "um "]))
def test_a_random_model_only_writes_stated_numbers(tiny_kitchen, minutes, temperature, filler):
    command = tiny_kitchen.parse(f"{filler}timer for {minutes} minutes then bake at {temperature}").command
    allowed = {"start_timer": {minutes, temperature}, "bake": {temperature}, "rinse": {minutes * 60, temperature}}
    assert command["command"] in {*allowed, "unknown"}, command  # no command the stated numbers do not fit
    for value in command["args"].values():
        if command["command"] in allowed:
            assert value in allowed[command["command"]], command


def test_grounding_can_be_switched_off_and_grammars_are_cached(tiny_bundle):
    free = CommandModel(edge.load(tiny_bundle("llama", "fp32")), KITCHEN, ground_numbers=False)
    assert free._grammar_for("timer for 5 minutes") is free.grammar
    grounded = CommandModel(edge.load(tiny_bundle("llama", "fp32")), KITCHEN)
    first = grounded._grammar_for("timer for 5 minutes")
    assert first is not grounded.grammar and grounded._grammar_for("5 minutes timer") is first
    assert grounded._grammar_for("no number") is grounded.grammar
