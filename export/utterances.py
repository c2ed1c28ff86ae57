"""Training requests made from a command set alone: its names, descriptions and argument types.

Nothing here reads recorded requests. Each command is read as *verb + object* from its name
(``set_oven_temperature``: set, oven temperature; ``oven_off``: oven, off), its arguments
decide how values are said (numbers as digits and as words, units from the argument's name,
levels such as "high" from its range, enum values with their common synonyms), and phrase
patterns for each kind of command (set a value, choose a mode, switch on/off, start, cancel,
ask for status) are filled in at random, wrapped in politeness and spoken-style noise.
Requests no command serves become the set's ``unknown`` command.

The phrasebook below is plain English about household devices; extend it for another domain.

>>> from edge.commands import CommandSet
>>> data = generate(CommandSet.from_file("appliance-panel.json"), per_command=300, seed=0)
>>> data[0]
Example(text='switch the hallway lights off please', command={'command': 'set_light', 'args': {...}})
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge.commands import Arg, Command, CommandSet

# --- phrasebook -------------------------------------------------------------------------

# What people call a device, keyed by the word a command set uses for it.
NOUNS: dict[str, list[str]] = {
    "oven": ["oven", "oven", "oven", "cooker"],
    "light": ["light", "lights", "lights", "lamp", "lighting"],
    "lights": ["lights", "light", "lamps", "lighting"],
    "fan": ["fan", "fan", "extractor", "extractor fan", "hood fan", "vent", "cooker hood"],
    "timer": ["timer", "timer", "kitchen timer", "countdown"],
    "heater": ["heater", "heating"],
    "door": ["door"],
    "blinds": ["blinds", "shades"],
}
# Synonyms of enum values and of verbs in descriptions.
VALUE_SYNONYMS: dict[str, list[str]] = {
    "bake": ["bake", "baking", "conventional", "top and bottom heat"],
    "grill": ["grill", "grilling", "broil", "broiler"],
    "fan": ["fan", "fan assisted", "fan oven", "convection"],
    "defrost": ["defrost", "defrosting", "thaw"],
    "kitchen": ["kitchen"],
    "dining room": ["dining room", "dining area", "dining table"],
    "living room": ["living room", "lounge", "sitting room", "front room"],
    "hallway": ["hallway", "hall", "corridor", "entrance", "entryway"],
    "bedroom": ["bedroom"],
    "bathroom": ["bathroom"],
}
VERB_SYNONYMS: dict[str, list[str]] = {
    "set": ["set", "change", "put", "adjust", "make"],
    "heat": ["heat", "preheat", "warm up", "heat up"],
    "start": ["start", "set", "begin", "run"],
    "cancel": ["cancel", "stop", "clear", "abort", "end", "kill", "reset", "turn off"],
    "choose": ["set", "switch", "change", "put"],
}
# Situations that say which device is wanted, said before the request itself.
CONTEXTS = {
    "fan": ["it's smoky in here", "the kitchen is full of smoke", "it's really steamy", "something is burning",
            "I'm frying fish", "the air is stuffy", "there's a lot of steam"],
    "oven": ["I'm making a pizza", "dinner needs cooking", "I want to roast a chicken"],
}  # fmt: skip
POLITE_BEFORE = ["", "", "", "", "please ", "could you ", "can you ", "would you ", "hey, ", "ok, ", "okay ",
                 "I'd like you to ", "go ahead and ", "um, ", "uh ", "hey edge, ", "can you please "]  # fmt: skip
POLITE_AFTER = ["", "", "", "", " please", " thanks", " thank you", " now", " for me", " right now", " quickly"]
IMPERATIVES = {"set", "turn", "switch", "start", "stop", "cancel", "put", "change", "adjust", "make", "heat", "preheat",
               "warm", "begin", "run", "clear", "abort", "end", "kill", "reset", "shut", "power", "use", "light",
               "brighten", "darken", "count", "remind", "time", "give", "tell", "report", "check", "play", "open",
               "lock", "unlock", "close", "empty", "order", "call", "read", "send", "book", "find", "buy", "add",
               "translate", "sing", "spell", "pause", "get", "let"}  # fmt: skip
# Requests no household panel serves: declined as `unknown`.
OUT_OF_DOMAIN = [
    "what's the weather like tomorrow", "tell me a joke", "play some jazz", "what time is it in tokyo",
    "who won the football last night", "call my sister", "order a pizza", "how tall is mount everest",
    "translate good morning into spanish", "what is the capital of australia", "add milk to the shopping list",
    "read me the news", "how many grams in a pound", "send a message to dave", "what's twelve times eight",
    "book a taxi for six", "who wrote hamlet", "set an alarm for seven am", "turn up the volume",
    "play the next song", "what's on tv tonight", "how do I make pancakes", "what's the recipe for lasagne",
    "how are you today", "what's your name", "sing me a song", "tell me a story", "good night",
    "what's the meaning of life", "how far is the moon", "remind me to call the dentist", "spell necessary",
    "what day is it", "is it going to rain", "find a good restaurant nearby", "buy more coffee",
    "pause the music", "open my email", "check my bank balance", "what's the score",
]  # fmt: skip
ERRANDS = ["order more {item}", "buy {item}", "add {item} to the shopping list", "we need {item}",
           "get me some {item}", "order {item} online", "put {item} on the list", "are we out of {item}",
           "how much does {item} cost", "remind me to buy {item}", "find a recipe with {item}"]  # fmt: skip
ITEMS = ["milk", "eggs", "bread", "coffee", "batteries", "dog food", "paper towels", "butter", "rice", "apples",
         "washing up liquid", "tea", "flour", "cheese", "toilet paper"]  # fmt: skip
OTHER_DEVICES = ["dishwasher", "fridge", "freezer", "washing machine", "tv", "television", "front door", "garage door",
                 "radio", "kettle", "coffee machine", "microwave", "thermostat", "air conditioning", "sprinkler",
                 "car", "doorbell camera", "vacuum", "toaster", "speaker"]  # fmt: skip
OTHER_DEVICE_FRAMES = ["turn on the {d}", "turn off the {d}", "start the {d}", "open the {d}", "lock the {d}",
                       "set the {d} to {n}", "switch the {d} on", "is the {d} running", "empty the {d}",
                       "run the {d}", "close the {d}", "unlock the {d}", "set the {d} to {n} degrees"]  # fmt: skip

ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_words(n: int, rng: random.Random | None = None) -> str:
    """``185`` -> "one hundred and eighty five" (or "a hundred eighty-five", when ``rng`` varies it)."""
    if n < 0:
        return "minus " + number_words(-n, rng)
    if n < 20:
        return ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        sep = rng.choice([" ", "-"]) if rng else " "
        return TENS[tens] + ("" if ones == 0 else sep + ONES[ones])
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        if rng and rest >= 10 and rng.random() < 0.25:  # "two twenty", "one eighty": how settings are read out
            return ONES[hundreds] + " " + number_words(rest, rng)
        head = ("a" if hundreds == 1 and rng and rng.random() < 0.3 else ONES[hundreds]) + " hundred"
        if rest == 0:
            return head
        joiner = rng.choice([" and ", " "]) if rng else " and "
        return head + joiner + number_words(rest, rng)
    thousands, rest = divmod(n, 1000)
    return number_words(thousands, rng) + " thousand" + ("" if rest == 0 else " " + number_words(rest, rng))


# --- how one command is read ------------------------------------------------------------


@dataclass
class Example:
    """One request and the command it should become."""

    text: str
    command: dict[str, Any]


@dataclass
class Reading:
    """A command read as verb + object: ``set_fan_speed`` -> verb set, subject fan, attribute speed."""

    command: Command
    verb: str
    subject: str  # the device noun ("oven"), or "" when the name names none
    attribute: str  # what of the device is changed ("temperature"), or ""
    particle: str  # "on"/"off" when the name ends in one
    description_verb: str  # first word of the description ("heat")


def read_command(c: Command) -> Reading:
    words = c.name.lower().split("_")
    particle = words.pop() if len(words) > 1 and words[-1] in ("on", "off") else ""
    verb = words.pop(0) if len(words) > 1 and words[0] in VERB_SYNONYMS | {"choose": [], "select": []} else ""
    subject = next((w for w in words if w in NOUNS), words[0] if words else "")
    attribute = " ".join(w for w in words if w != subject)
    first = c.description.split()[0].lower().strip(".,:") if c.description.split() else ""
    return Reading(c, verb, subject, attribute, particle, first)


def _noun(rng: random.Random, subject: str) -> str:
    return rng.choice(NOUNS.get(subject, [subject.replace("_", " ")]))


def _the(rng: random.Random, noun: str) -> str:
    return rng.choice(["the ", "the ", "the ", "my ", ""]) + noun


UNIT_WORDS = {
    "celsius": (["degrees", "degrees", "degrees celsius", "degrees C", "°C", "C", ""], "°"),
    "temperature": (["degrees", "degrees", "degrees celsius", "°C", ""], "°"),
    "degrees": (["degrees", "degrees", "°", ""], "°"),
    "minutes": (["minutes", "minutes", "minutes", "mins", "min"], ""),
    "seconds": (["seconds", "secs"], ""),
    "hours": (["hours"], ""),
    "percent": (["percent", "%"], ""),
}


# Durations people say in hours or fractions, by minutes.
DURATIONS = {
    1: ["a minute", "one minute"], 15: ["a quarter of an hour", "quarter of an hour"],
    30: ["half an hour", "thirty minutes", "a half hour"], 45: ["three quarters of an hour", "forty five minutes"],
    60: ["an hour", "one hour", "a full hour", "sixty minutes"],
    90: ["an hour and a half", "one and a half hours", "ninety minutes", "one hour thirty minutes"],
    120: ["two hours", "a couple of hours"], 150: ["two and a half hours", "two hours and thirty minutes"],
    180: ["three hours"],
}  # fmt: skip


def _unit(arg: Arg, reading: Reading) -> str | None:
    for key in (arg.name.lower(), reading.attribute):
        for word, _ in UNIT_WORDS.items():
            if word in key:
                return word
    return None


def say_number(rng: random.Random, arg: Arg, value: int | float, reading: Reading) -> str:
    """How a person says ``value`` for ``arg``: digits or words, with a unit when the argument has one."""
    if isinstance(value, float) and not value.is_integer():
        spoken = str(value)
    else:
        spoken = number_words(int(value), rng) if rng.random() < 0.4 else str(int(value))
    unit = _unit(arg, reading)
    if unit == "minutes" and int(value) in DURATIONS and rng.random() < 0.6:
        return rng.choice(DURATIONS[int(value)])
    if unit is None:
        return spoken
    words = UNIT_WORDS[unit][0]
    if unit == "minutes" and value == 1:
        words = ["minute"]
    word = rng.choice(words)
    if word in ("°C", "°", "C") and spoken.isdigit():
        return spoken + rng.choice(["", " "]) + word if word != "°" else spoken + word
    return f"{spoken} {word}".strip()


def level_names(arg: Arg, description: str) -> dict[int, list[str]]:
    """Words for points of a small integer range ("off", "low", "max"), from the range and the description."""
    if arg.type != "integer" or arg.minimum is None or arg.maximum is None or arg.maximum - arg.minimum > 10:
        return {}
    low, high = int(arg.minimum), int(arg.maximum)
    names: dict[int, list[str]] = {high: ["max", "maximum", "full", "full speed", "full blast", "high", "top speed",
                                          "the highest setting", "as high as it goes"]}  # fmt: skip
    first = low + 1 if low == 0 else low
    names.setdefault(first, []).extend(["low", "the lowest setting", "minimum", "slow"])
    if high - first >= 2:
        names.setdefault((first + high) // 2, []).extend(["medium", "middle", "mid"])
    for n, word in re.findall(r"(\d+) is (?:the )?(\w+)", description.lower()):
        names.setdefault(int(n), []).append(word)
    return names


def _value(rng: random.Random, arg: Arg, duration: bool = False) -> Any:
    if arg.type == "enum":
        return rng.choice(arg.enum)
    if arg.type == "boolean":
        return rng.random() < 0.5
    if arg.type == "string":
        return rng.choice(["note", "milk", "eggs", "bread"])[: arg.max_length]
    low = arg.minimum if arg.minimum is not None else 0
    high = arg.maximum if arg.maximum is not None else low + 100
    if arg.type == "number":
        return round(rng.uniform(low, high), 1)
    low, high = int(low), int(high)
    if duration and rng.random() < 0.3:
        return rng.choice([v for v in DURATIONS if low <= v <= high] or [low])
    # round values are what people say most: 180 degrees, 10 minutes
    if high - low > 20 and rng.random() < 0.7:
        step = rng.choice([5, 10, 10, 25, 50]) if high - low > 60 else 5
        rounded = [v for v in range(low, high + 1) if v % step == 0]
        if rounded:
            return rng.choice(rounded)
    return rng.randint(low, high)


# --- phrase patterns, one per kind of command ---------------------------------------------


def _set_number(rng: random.Random, r: Reading, arg: Arg) -> tuple[str, dict]:
    value = _value(rng, arg)
    levels = level_names(arg, r.command.description)
    noun = _noun(rng, r.subject)
    attr = r.attribute or "setting"
    if value in levels and rng.random() < 0.5:
        word = rng.choice(levels[value])
        if word in ("off",):
            the = _the(rng, noun)
            text = rng.choice([f"turn off {the}", f"switch {the} off", f"{noun} off", f"turn {the} off",
                               f"stop {the}", f"shut {the} off"])  # fmt: skip
        elif value == int(arg.maximum or 0) and rng.random() < 0.4:
            text = rng.choice([f"max {_the(rng, noun)}", f"max out {_the(rng, noun)}", f"crank {_the(rng, noun)} up",
                               f"turn {_the(rng, noun)} all the way up", f"{noun} all the way up",
                               f"{noun} as high as it goes", f"full power on {_the(rng, noun)}"])  # fmt: skip
        else:
            text = rng.choice([f"set {_the(rng, noun)} to {word}", f"turn {_the(rng, noun)} up to {word}",
                               f"{noun} on {word}", f"put {_the(rng, noun)} on {word}", f"{noun} {attr} {word}",
                               f"run {_the(rng, noun)} at {word}", f"turn {_the(rng, noun)} to {word}"])  # fmt: skip
        if r.subject in CONTEXTS and rng.random() < 0.3:  # "it's smoky in here, fan to max"
            text = rng.choice(CONTEXTS[r.subject]) + rng.choice([", ", " so ", ". "]) + text
        return text, {arg.name: value}
    said = say_number(rng, arg, value, r)
    if levels:  # a small scale: "speed 2", "level two", "setting 2"
        said = rng.choice([f"{attr} {said}", f"level {said}", f"setting {said}", said, f"{said}"])
    verbs = VERB_SYNONYMS.get(r.verb or "set", ["set"]) + VERB_SYNONYMS.get(r.description_verb, [])
    verb = rng.choice(verbs)
    the_noun = _the(rng, noun)
    text = rng.choice(
        [
            f"{verb} {the_noun} to {said}",
            f"{verb} {the_noun} to {said}",
            f"{verb} {the_noun} {attr} to {said}",
            f"{noun} to {said}",
            f"{noun} {attr} {said}",
            f"{noun} {said}",
            f"turn {the_noun} to {said}",
            f"I want {the_noun} at {said}",
            f"can we have {the_noun} at {said}",
            f"{said} on {the_noun}",
            f"{the_noun} {attr} should be {said}",
        ]
    )
    return text, {arg.name: value}


def _choose(rng: random.Random, r: Reading, arg: Arg) -> tuple[str, dict]:
    value = _value(rng, arg)
    said = rng.choice(VALUE_SYNONYMS.get(str(value), [str(value)]))
    noun = _noun(rng, r.subject)
    attr = r.attribute or "mode"
    verb = rng.choice(VERB_SYNONYMS["choose"])
    text = rng.choice(
        [
            f"{verb} {_the(rng, noun)} to {said}",
            f"{verb} {_the(rng, noun)} to {said} {attr}",
            f"{said} {attr}",
            f"{said} {attr} please",
            f"use {said} {attr}",
            f"use the {said} setting",
            f"put {_the(rng, noun)} on {said}",
            f"{noun} on {said}",
            f"{said} {attr} on {_the(rng, noun)}",
            f"switch to {said}",
            f"change the {attr} to {said}",
            f"I want to {value}" if str(value).isalpha() else f"{said} {attr}",  # "I want to grill"
            f"{noun} {attr} {said}",
        ]
    )
    return text, {arg.name: value}


def _switch(rng: random.Random, r: Reading, place: Arg | None, state: Arg) -> tuple[str, dict]:
    on = rng.random() < 0.5
    where = _value(rng, place) if place else None
    noun = _noun(rng, r.subject)
    p = rng.choice(VALUE_SYNONYMS.get(str(where), [str(where)])) if place else ""
    word = "on" if on else "off"
    verb = rng.choice(["turn", "turn", "switch", "put"] if on else ["turn", "turn", "switch", "shut"])
    if place:
        frames = [f"{verb} {word} the {p} {noun}", f"{verb} the {p} {noun} {word}", f"{p} {noun} {word}",
                  f"{noun} {word} in the {p}", f"{verb} {word} the {noun} in the {p}", f"{p} {noun}s {word}",
                  f"{verb} the {noun} {word} in the {p}", f"can I have the {p} {noun} {word}"]  # fmt: skip
        if r.subject in ("light", "lights"):
            frames += (
                [f"it's too dark in the {p}", f"I can't see anything in the {p}", f"light up the {p}",
                 f"the {p} is too dark", f"it's dark in the {p}", f"some light in the {p}", f"brighten the {p}"]
                if on
                else [f"it's too bright in the {p}", f"nobody is in the {p}", f"lights out in the {p}",
                      f"kill the {p} {noun}", f"darken the {p}", f"no need for light in the {p}",
                      f"I'm leaving the {p}, {noun} off"]
            )  # fmt: skip
        text = rng.choice(frames)
    else:
        text = rng.choice([f"{verb} {word} the {noun}", f"{verb} the {noun} {word}", f"{noun} {word}"])
    args = {state.name: on} | ({place.name: where} if place else {})
    return text, {a.name: args[a.name] for a in r.command.args}


def _start_duration(rng: random.Random, r: Reading, arg: Arg) -> tuple[str, dict]:
    value = _value(rng, arg, duration=_unit(arg, r) == "minutes")
    said = say_number(rng, arg, value, r)
    noun = _noun(rng, r.subject)
    verb = rng.choice(VERB_SYNONYMS["start"])
    # "a 10 minute timer", "a one hour timer": the unit is singular before the noun
    compound = said.replace("minutes", "minute").replace("mins", "minute").replace("hours", "hour")
    compound = compound.removeprefix("an ").removeprefix("a ")
    if compound.startswith("hour"):
        compound = "one " + compound
    text = rng.choice(
        [
            f"{verb} a {noun} for {said}",
            f"{verb} a {noun} for {said}",
            f"{verb} the {noun} for {said}",
            f"{noun} for {said}",
            f"{compound} {noun}",
            f"a {compound} {noun}",
            f"{verb} a {compound} {noun}",
            f"count down {said}",
            f"remind me in {said}",
            f"time {said} for me",
            f"give me {said} on the {noun}",
            f"let me know when {said} are up" if value != 1 else f"let me know in {said}",
            f"{noun} {said}",
        ]
    )
    return text, {arg.name: value}


def _no_args(rng: random.Random, r: Reading, subjects: set[str]) -> tuple[str, dict]:
    noun = _noun(rng, r.subject)
    the = _the(rng, noun)
    if r.particle == "off":
        text = rng.choice([f"turn off {the}", f"switch {the} off", f"{noun} off", f"shut {the} off",
                           f"shut down {the}", f"power off {the}", f"turn {the} off", f"I'm done with {the}",
                           f"kill {the}", f"stop {the}", f"switch off {the}", f"{the} can go off now"])  # fmt: skip
    elif r.particle == "on":
        text = rng.choice([f"turn on {the}", f"switch {the} on", f"{noun} on", f"power on {the}",
                           f"switch on {the}", f"turn {the} on", f"I need {the} on", f"put {the} on",
                           f"{the} can come on now"])  # fmt: skip
    elif r.verb == "cancel" or r.description_verb in ("stop", "cancel"):
        verb = rng.choice(VERB_SYNONYMS["cancel"])
        text = rng.choice([f"{verb} {the}", f"{verb} {the}", f"{noun} {verb}", f"never mind {the}",
                           f"I don't need {the} anymore", f"get rid of {the}", f"{verb} the running {noun}",
                           "stop counting down"])  # fmt: skip
    else:  # status-like commands: a question about everything
        others = sorted(subjects & set(NOUNS))
        device = _noun(rng, rng.choice(others)) if others else "device"
        questions = _state_questions(rng, device)
        text = rng.choice(
            [
                "status",
                "status report",
                "what's the status",
                "give me a status update",
                "what is everything doing",
                "what's going on",
                "what's on right now",
                "is anything on",
                "report",
                "give me an update",
                f"is the {device} on",
                f"what's the {device} doing",
                f"what's the {device} set to",
                "how is everything",
                "what are the appliances doing",
                "tell me what's running",
                f"{r.command.description.rstrip('.').lower()}",
                f"how long is left on the {_noun(rng, 'timer')}" if "timer" in subjects else "status",
                "check everything",
                *questions,
            ]
        )
    return text, {}


def _state_questions(rng: random.Random, device: str) -> list[str]:
    """Questions about how a device is doing: answered by a status report, not by changing anything."""
    return [
        f"how hot is the {device}",
        f"is the {device} still on",
        f"is the {device} hot yet",
        f"what temperature is the {device} at",
        f"how fast is the {device} going",
        "which lights are on",
        "how much time is left",
        f"is the {device} running",
        f"what mode is the {device} in",
        f"has the {device} warmed up",
        f"what is the {device} doing right now",
        "anything still switched on",
        f"did I leave the {device} on",
    ]


def _out_of_domain(rng: random.Random, avoid: set[str]) -> str:
    roll = rng.random()
    if roll < 0.45:
        return rng.choice(OUT_OF_DOMAIN)
    if roll < 0.65:
        return rng.choice(ERRANDS).format(item=rng.choice(ITEMS))
    devices = [d for d in OTHER_DEVICES if not any(w in avoid for w in d.split())]
    return rng.choice(OTHER_DEVICE_FRAMES).format(d=rng.choice(devices), n=rng.randint(1, 60))


def _pattern(r: Reading, subjects: set[str]) -> Callable[[random.Random], tuple[str, dict]]:
    """The phrase pattern for one command, chosen by its arguments' types."""
    args = r.command.args
    numbers = [a for a in args if a.type in ("integer", "number")]
    enums = [a for a in args if a.type == "enum"]
    booleans = [a for a in args if a.type == "boolean"]
    if booleans and len(args) <= 2 and len(enums) == len(args) - 1:
        return lambda rng: _switch(rng, r, enums[0] if enums else None, booleans[0])
    if len(args) == 1 and numbers and (r.verb == "start" or _unit(numbers[0], r) in ("minutes", "seconds", "hours")):
        return lambda rng: _start_duration(rng, r, numbers[0])
    if len(args) == 1 and numbers:
        return lambda rng: _set_number(rng, r, numbers[0])
    if len(args) == 1 and enums:
        return lambda rng: _choose(rng, r, enums[0])
    if not args:
        return lambda rng: _no_args(rng, r, subjects)
    return lambda rng: _described(rng, r)


def _described(rng: random.Random, r: Reading) -> tuple[str, dict]:
    """Fallback for shapes the patterns do not know: the description with each argument's value."""
    args = {a.name: _value(rng, a) for a in r.command.args}
    values = " and ".join(
        f"{a.name.replace('_', ' ')} {say_number(rng, a, args[a.name], r) if a.type in ('integer', 'number') else args[a.name]}"  # noqa: E501
        for a in r.command.args
    )
    return f"{r.command.description.rstrip('.').lower()} with {values}", args


def _dress(rng: random.Random, text: str) -> str:
    """Politeness and the look of a transcript: capitals, punctuation, fillers."""
    # "could you ..." only before an instruction, not before "it's too dark" or "is the oven on"
    before = rng.choice(POLITE_BEFORE if text.split()[0] in IMPERATIVES else ["", "", "hey, ", "ok, ", "um, "])
    text = before + text + rng.choice(POLITE_AFTER)
    if before.startswith(("could", "can", "would")) and rng.random() < 0.7:
        text += "?"
    elif rng.random() < 0.3:
        text += rng.choice([".", ".", "!"])
    if rng.random() < 0.4:
        text = text[0].upper() + text[1:]
    return " ".join(text.split())


def generate(commands: CommandSet, per_command: int = 300, seed: int = 0) -> list[Example]:
    """About ``per_command`` distinct requests for each command (fewer when a command has fewer phrasings)."""
    rng = random.Random(seed)
    readings = [read_command(c) for c in commands.commands.values() if c.name != commands.unknown]
    subjects = {r.subject for r in readings if r.subject}
    avoid = {w for r in readings for w in [r.subject, *NOUNS.get(r.subject, [])]}
    makers: list[tuple[Callable[[random.Random], tuple[str, dict]], str]] = [
        (_pattern(r, subjects), r.command.name) for r in readings
    ]  # noqa: E501
    actions = makers[:]
    if commands.unknown:
        makers.append((lambda g: (_out_of_domain(g, avoid), {}), commands.unknown))
    examples: list[Example] = []
    seen: set[str] = set()
    for make, name in makers:
        made, tries = 0, 0
        while made < per_command and tries < per_command * 20:
            tries += 1
            text, args = make(rng)
            if name != commands.unknown and len(actions) > 1 and rng.random() < 0.06:
                # two requests in one breath: the first is done (one command per request)
                other = rng.choice([m for m, n in actions if n != name])
                text += rng.choice([" and ", " and then ", ", then "]) + other(rng)[0]
            text = _dress(rng, text)
            if text.lower() in seen:
                continue
            seen.add(text.lower())
            examples.append(Example(text, commands.validate({"command": name, "args": args})))
            made += 1
    rng.shuffle(examples)
    return examples


def split(examples: list[Example], validation: float = 0.1) -> tuple[list[Example], list[Example]]:
    """(train, validation): the last ``validation`` share held out; texts are distinct, so no leak."""
    n_val = max(1, int(len(examples) * validation)) if len(examples) > 1 else 0
    return examples[: len(examples) - n_val], examples[len(examples) - n_val :]
