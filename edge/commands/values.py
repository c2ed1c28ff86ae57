"""The numbers a request states, so that decoding writes one of them instead of inventing its own.

A small model that reads "timer for 3 minutes" can still write 30, and "a one hour timer" 150: digits
are tokens like any other to it. So each request gets its own grammar in which a numeric argument can
only take a value the request states (:func:`stated_values` on the normalised request), converted to the
argument's unit of time ("1 hour" is 60 for an argument counted in minutes; a length of time is no
value for an argument not counted in time, "12 degrees" none for one counted in minutes, and a time of
day ("at 5 am", normalised to "05:00") a value only of an hour of the day, never of a length). Where
no stated number fits an argument's range, the argument keeps its whole range: levels said in words
("max the fan", "dim it all the way") are still the model's to read. And where a stated number fits
some command, the request means one of those commands or none (:func:`commands_meant`): "skip watering
for 3 days" is not the command that switches a zone off.

>>> from edge.commands.command_set import CommandSet
>>> timer = CommandSet.from_dict({"commands": {"start_timer": {
...     "description": "Start a timer for a number of minutes.",
...     "args": {"minutes": {"type": "integer", "minimum": 1, "maximum": 180}}}}})
>>> stated_values("start a 1 hour timer")
[Stated(value=1, unit='hours')]
>>> allowed_values(timer, stated_values("start a 1 hour timer"))
{('start_timer', 'minutes'): (60,)}
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

from edge.commands.command_set import Arg, Command, CommandSet
from edge.commands.numbers import TIME_WORDS, normalise

# The units an argument can be counted in, as its name or its command's description says them; the first
# that matches wins, so "celsius" beats the "degrees" of "degrees celsius".
UNITS = ("celsius", "temperature", "degrees", "fahrenheit", "minutes", "seconds", "hours", "days", "weeks",
         "percent", "rpm", "revolutions", "litres", "metres", "meters")  # fmt: skip
SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "weeks": 604800}
# how a request names the unit right after its number: a unit of time, or a measure (what UNITS says it in)
SAID_UNITS = TIME_WORDS | {
    "degree": "degrees", "degrees": "degrees", "celsius": "degrees", "fahrenheit": "degrees",
    "percent": "percent", "rpm": "rpm",
}  # fmt: skip
# the measures of UNITS that are one quantity, as SAID_UNITS names them
MEASURES = {"celsius": "degrees", "temperature": "degrees", "degrees": "degrees", "fahrenheit": "degrees",
            "percent": "percent", "rpm": "rpm", "revolutions": "rpm"}  # fmt: skip
# A number not inside a word, a decimal or a clock's minutes; then a clock's minutes, or the word after it.
_NUMBER = re.compile(r"(?<![\w.:])(-?\d+(?:\.\d{1,6})?)(:\d\d)?(?:\s*-?\s*([A-Za-z]+))?")
MAX_VALUES = 8  # per argument: a request that states more numbers than this is not narrowing anything
CLOCK = "o'clock"  # the unit of a number stated as a time of day ("05:00", "19:30")


@dataclass(frozen=True)
class Stated:
    """One number as a request states it, with the unit said right after it, if any (a value of SAID_UNITS)."""

    value: int | float
    unit: str | None = None


def unit_of(arg: Arg, description: str = "") -> str | None:
    """The unit an argument is counted in (one of :data:`UNITS`), from its name first, then ``description``."""
    for place in (arg.name.lower(), description.lower()):
        for word in UNITS:
            if re.search(rf"\b{word}\b|{word}$|^{word}", place):
                return word
    return None


def is_hour_of_day(arg: Arg) -> bool:
    """Whether ``arg`` is an hour of the day ("hour", "start_hour": an integer no more than 24), not a length."""
    return (
        arg.type == "integer"
        and re.search(r"(?:^|_)hour(?:$|_)", arg.name.lower()) is not None
        and arg.maximum is not None
        and arg.maximum <= 24
    )


def stated_values(request: str) -> list[Stated]:
    """Every number in ``request`` (already normalised: digits, 24-hour clock times), in order.

    A clock time states its hour, and its minutes unless on the hour ("21:00" is 21, "7:30" is 7 and 30), both
    in :data:`CLOCK`; an ordinal its number ("3rd" is 3).
    """
    stated = []
    for number, clock, word in _NUMBER.findall(request):
        value = float(number)  # inf past what a float holds: past every argument's range, still stated
        if clock and len(number) <= 2:
            stated.append(Stated(int(value), CLOCK))
            if clock.strip(":0"):
                stated.append(Stated(int(clock[1:]), CLOCK))
            continue
        stated.append(Stated(int(value) if value.is_integer() else value, SAID_UNITS.get(word.lower())))
    return stated


def _as_counted(s: Stated, arg: Arg, unit: str | None) -> int | float | None:
    """``s`` as ``arg``, counted in ``unit``, counts it, or None when it is no value of that argument."""
    if s.unit == CLOCK:  # a time of day is an hour of the day, never a length, a level or a measure
        return s.value if is_hour_of_day(arg) else None
    if s.unit in SECONDS:  # a length of time is a value only of an argument counted in time, in its unit
        if unit not in SECONDS:
            return None
        return s.value * SECONDS[s.unit] / SECONDS[unit]  # "1 hour" for an argument in minutes is 60
    if s.unit and MEASURES.get(unit or "") != s.unit:  # "12 degrees" is no count of minutes
        return None
    return s.value


def _candidates(arg: Arg, unit: str | None, stated: list[Stated]) -> tuple[int | float, ...]:
    values = []
    for s in stated:
        value = _as_counted(s, arg, unit)
        if value is None or not math.isfinite(value):  # a number too long for a float is no value to write
            continue
        if arg.type == "integer":
            if not float(value).is_integer():
                continue
            value = int(value)
        if arg.in_range(value):
            values.append(value)
    values = list(dict.fromkeys(values))
    return tuple(values) if len(values) <= MAX_VALUES else ()


def _numeric_args(commands: CommandSet) -> Iterator[tuple[str, Arg, str | None]]:
    """(command name, argument, its unit) for every numeric argument of the set."""
    for c in commands.commands.values():
        for a in c.args:
            if a.type in ("integer", "number"):
                yield c.name, a, unit_of(a, c.description)


def said_beyond_range(commands: CommandSet, stated: list[Stated]) -> bool:
    """Whether a number said with its unit ("5000 degrees", "3 days") is past the range of an argument counted
    in that unit: what the request asks is more than the command can do."""
    with_unit = [s for s in stated if s.unit]
    if not with_unit:
        return False
    for _, a, unit in _numeric_args(commands):
        for s in with_unit:
            value = _as_counted(s, a, unit)
            if value is not None and not a.in_range(value):
                return True
    return False


def allowed_values(commands: CommandSet, stated: list[Stated]) -> dict[tuple[str, str], tuple]:
    """(command, argument) -> the values the request allows it, for each numeric argument a stated number fits."""
    if not stated:
        return {}  # most requests: no argument's unit needs reading
    allowed = {}
    for name, a, unit in _numeric_args(commands):
        values = _candidates(a, unit, stated)
        if values:
            allowed[(name, a.name)] = values
    return allowed


def commands_meant(
    commands: CommandSet, stated: list[Stated], allowed: dict[tuple[str, str], tuple], request: str = ""
) -> set[str] | None:
    """The commands a request that states numbers can mean, or None when it can mean any.

    "Hold off watering for five days" is not a command without a number, nor one whose numbers five days
    cannot be: where a stated number fits some command's numeric argument (``allowed``), only such commands
    remain, with declining, and any command that names a stated number among its choices ("zone 3"). Where
    one of them also has a choice that ``request`` names ("drop the kitchen down to 16": a room and a
    temperature of one command), the request asks for it, not for something the set does not do. Where
    none fits and a number said with its unit is past an argument counted in it ("set the oven to 5000
    degrees"), the request is declined: no setting it would be right, and a model would copy "50" out of it.
    """
    if not allowed:
        return {commands.unknown} if commands.unknown and said_beyond_range(commands, stated) else None
    meant = {command for command, _ in allowed}
    if named := {c for c in meant if _names_a_choice(commands.commands[c], request)}:
        return named
    if commands.unknown:
        meant.add(commands.unknown)
    said = {s.value for s in stated}
    for c in commands.commands.values():
        if any(said & _numbers_named(str(choice)) for a in c.args for choice in a.enum or ()):
            meant.add(c.name)
    return meant


def _names_a_choice(command: Command, request: str) -> bool:
    """Whether ``request`` says one of ``command``'s choices whole ("the back lawn", "kitchen")."""
    said = f" {' '.join(re.findall(r'[a-z0-9]+', request.lower()))} "
    return any(f" {str(choice).lower()} " in said for a in command.args for choice in a.enum or ())


@functools.lru_cache(maxsize=4096)
def _numbers_named(choice: str) -> frozenset[int | float]:
    """The numbers a command's choice names ("zone 3", "zone three"): read once per choice, not per request."""
    return frozenset(s.value for s in stated_values(normalise(choice)))


def numbers_stated(commands: CommandSet, request: str, command: dict) -> bool:
    """Whether every numeric argument of ``command`` holds a number ``request`` states, as the argument counts it."""
    c = commands.commands.get(command["command"])
    if c is None:
        return False
    stated = stated_values(request)
    return all(
        command["args"].get(a.name) in _candidates(a, unit_of(a, c.description), stated)
        for a in c.args
        if a.type in ("integer", "number")
    )
