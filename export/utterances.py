"""Training requests made from a command set alone: its names, descriptions and argument types, for any domain.

Nothing here reads recorded requests, and nothing is written for one domain. Each command is read into
words a person could use for it (:class:`Reading`):

- its **action**: the verb of its name or description ("water_zone": water; "Power up one machine": power
  up), with general English synonyms ("start": fire up, get ... going, kick off);
- its **object**: the noun phrase of its description ("the lathe's spindle speed") and the words of its
  name ("pump pressure");
- its **description as a sentence to fill in**: "Water one zone of the garden now for a number of
  minutes" becomes "water the back lawn now for 25 minutes"; "Enable or disable the rain sensor" gives
  both halves; "0 cancels the delay" says how the value 0 is asked for;
- its **arguments**, said as people say them: numbers as digits and words with the unit the name or
  description gives (degrees, minutes, days, rpm ...), hours of the day as "6 am" or "18:00", levels of a
  small range as "low" or "max" (and the words the description gives them: "1 is the gentlest"), enum values
  whole or by a word of their own ("the borders"), booleans as on/off, enable/disable or the description's
  own pair.

Phrase frames for each shape of command (no args, one value, a choice, a switch, a place with a value ...)
put these in many word orders; then requests are dressed as people type or say them: orders and questions,
polite and curt, fillers ("um", "ok so"), wake words, indirect wishes ("I'd like ...", "can we have ..."),
situations that imply the command ("it's too dark in the hall"), with and without punctuation. Requests no
command serves (general questions, errands, devices the set does not hold) become the set's ``unknown``.

>>> from edge.commands.command_set import CommandSet
>>> data = generate(CommandSet.from_file("garden-irrigation.json"), per_command=300, seed=0)
>>> data[0]
Example(text='could you water the back lawn for 25 minutes?', command={'command': 'water_zone', ...})
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from edge.commands.command_set import Arg, Command, CommandSet
from edge.commands.values import SECONDS, is_hour_of_day
from edge.commands.values import unit_of as arg_unit

Maker = Callable[[random.Random], tuple[str, dict]]

# --- general English, no domain ---------------------------------------------------------

# Verbs a command's name or description may use, and what else people say for them.
VERBS: dict[str, list[str]] = {
    "set": ["set", "change", "put", "adjust", "make", "bring"],
    "start": ["start", "turn on", "switch on", "power up", "fire up", "run", "begin", "kick off"],
    "stop": ["stop", "turn off", "switch off", "shut down", "power down", "kill", "halt", "shut off"],
    "cancel": ["cancel", "stop", "clear", "abort", "call off", "scrap", "end"],
    "pause": ["pause", "hold off", "suspend", "delay", "postpone"],
    "enable": ["enable", "turn on", "switch on", "activate"],
    "disable": ["disable", "turn off", "switch off", "deactivate"],
    "open": ["open"],
    "close": ["close", "shut"],
    "heat": ["heat", "preheat", "warm up", "heat up"],
    "choose": ["set", "switch", "change", "put", "choose", "select"],
    "report": ["report", "tell me", "show me", "give me"],
    "water": ["water", "irrigate", "sprinkle", "soak"],
    "power up": ["power up", "start", "turn on", "switch on", "fire up"],
    "power down": ["power down", "stop", "turn off", "switch off", "shut down"],
    "cut": ["cut", "kill", "stop"],
    "switch": ["switch", "turn"],
    "turn": ["turn", "switch"],
}
# verbs whose object is the thing a value is given to ("set the pump pressure to 3")
SETTING_VERBS = {"set", "choose", "change", "switch", "turn", "adjust", "select", "use"}
ON_VERBS = ["turn on", "switch on", "enable", "activate", "start"]
OFF_VERBS = ["turn off", "switch off", "disable", "deactivate", "stop"]
STOP_WORDS = {"the", "a", "an", "of", "to", "in", "on", "for", "at", "and", "or", "one", "its", "it", "is", "that",
              "with", "by", "from", "now", "all", "every", "this", "which", "what", "right", "off", "set",
              "your"}  # fmt: skip
# What a value of a thing is called: the words after its name in "the pump pressure level"
ATTRIBUTES = ("speed", "level", "suction", "pressure", "temperature", "volume", "brightness", "setting", "target")
# What people call common things, keyed by the word a command set uses (any domain: add freely).
NOUNS: dict[str, list[str]] = {
    "light": ["light", "lights", "lamp", "lighting"],
    "lights": ["lights", "light", "lamps", "lighting"],
    "fan": ["fan", "extractor", "vent"],
    "extractor": ["extractor", "extraction", "extractor fan"],
    "heater": ["heater", "heating"],
    "timer": ["timer", "countdown"],
    "pump": ["pump"],
    "temperature": ["temperature", "temp"],
    "speed": ["speed"],
    "level": ["level", "setting"],
    # enum values: rooms, modes, places
    "living room": ["living room", "lounge", "sitting room"],
    "hallway": ["hallway", "hall", "corridor"],
    "bedroom": ["bedroom"],
    "grill": ["grill", "broil"],
    "bake": ["bake", "baking"],
    "defrost": ["defrost", "thaw"],
    "lawn": ["lawn", "grass"],
    "ceiling": ["ceiling", "overhead"],
}
# Situations that imply a command, keyed by a word of its object; (value true/high, value false/low).
SITUATIONS: dict[str, tuple[list[str], list[str]]] = {
    "light": (["it's too dark{where}", "I can't see anything{where}", "it's dark{where}"],
              ["it's too bright{where}", "nobody is{where}", "no need for light{where}"]),
    "heater": (["it's freezing in here", "it's cold in here", "I'm cold"],
               ["it's too hot in here", "it's boiling in here"]),
    "fan": (["it's smoky in here", "the air is stuffy", "there's a lot of steam"], []),
    "extractor": (["there's dust everywhere", "the air is full of dust"], []),
}  # fmt: skip
SITUATIONS["lights"] = SITUATIONS["light"]
SITUATIONS["heating"] = SITUATIONS["heater"]
POLITE_BEFORE = ["please ", "could you ", "can you ", "would you ", "could you please ", "can you please ",
                 "I'd like you to ", "I need you to ", "go ahead and ", "just ",
                 "I want you to ", "be a dear and ", "quickly "]  # fmt: skip
WISHES = ["I'd like to ", "I want to ", "let's ", "we need to ", "time to ", "I need to ", "can we ", "could we "]
OPENERS = ["hey, ", "ok, ", "okay ", "um, ", "uh ", "so ", "right, ", "alright, ", "hey edge, ", "ok so ",
           "hi, ", "erm, ", "well, ", "computer, "]  # fmt: skip
AFTER = [" please", " thanks", " thank you", " now", " for me", " right now", " pls", " if you can", " thx",
         " asap", ", cheers", " straight away"]  # fmt: skip
IMPERATIVE = {w.split()[0] for v in VERBS.values() for w in v} | set(VERBS) | {"give", "tell", "show", "let", "put",
              "make", "use", "get", "keep", "include", "leave", "take", "add", "remove", "skip", "lower", "raise",
              "increase", "decrease", "bring", "crank", "max", "light", "brighten", "darken", "count", "remind",
              "time", "spin", "slow", "speed", "hold", "resume", "mist", "check", "report"}  # fmt: skip
# Requests no device panel serves: declined as `unknown`.
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
    "pause the music", "open my email", "check my bank balance", "what's the score", "what's the date today",
    "how old is the universe", "who is the prime minister", "convert ten miles to kilometres", "I love you",
    "thank you", "never mind", "hello", "what can you do", "do you like cats", "flip a coin", "roll a dice",
    "how do you spell rhythm", "what's a good name for a dog", "who invented the telephone", "blah blah",
]  # fmt: skip
# The same kinds of request composed from parts, so that declining is learned from what a request is about
# rather than from a list of phrasings; a part that says one of the set's own words is not used.
GENERAL_FRAMES = [
    "what's the weather {when}", "is it going to rain {when}", "what's the weather like in {city}",
    "what time is it in {city}", "how hot will it be {when}", "do I need an umbrella {when}",
    "play {music}", "put on {music}", "I want to listen to {music}", "call {person}", "ring {person}",
    "text {person} that I'm running late", "send a message to {person}", "video call {person}",
    "how do I {task}", "how do you {task}", "what's the best way to {task}", "can you teach me to {task}",
    "tell me about {topic}", "what do you know about {topic}", "tell me a fun fact about {topic}",
    "how old is {topic}", "remind me to {errand} {when}", "don't let me forget to {errand}",
    "find {place} nearby", "where is {place}", "how far is {place}", "book {booking} {when}",
    "what's on my calendar {when}", "what's the news {when}", "who is playing {when}",
]  # fmt: skip
# A phone's own jobs, declined by a set that has no timer, alarm or reminder of its own: "set a timer for ten
# minutes" is not a hot water boost, but a set with a timer may take "remind me in five minutes" for one.
PHONE_WORDS = {"timer", "timers", "alarm", "alarms", "remind", "reminder", "reminders", "clock", "stopwatch"}
PHONE_FRAMES = [
    "set a timer for {minutes}", "start a {minutes} timer", "timer for {minutes}", "set an alarm for {hour}",
    "wake me up at {hour}", "remind me in {minutes} to {errand}", "remind me at {hour} to {errand}",
    "cancel my alarm", "snooze the alarm", "how long is left on my timer", "start a stopwatch",
]  # fmt: skip
GENERAL_PARTS = {
    "when": ["today", "tomorrow", "this weekend", "tonight", "on friday", "next week", "this afternoon", ""],
    "city": ["paris", "tokyo", "london", "new york", "sydney", "berlin", "madrid", "cairo", "toronto"],
    "music": ["some jazz", "my playlist", "the radio", "a podcast", "something relaxing", "an audiobook",
              "some rock music", "the top forty", "classical music", "that song from yesterday"],
    "person": ["mum", "dad", "my sister", "dave", "the office", "sarah", "my brother", "the doctor", "grandma"],
    "task": ["cook rice", "tie a tie", "change a tyre", "fix a leaky tap", "make bread", "fold a fitted sheet",
             "get rid of ants", "get a red wine stain out", "learn french", "hang a picture", "unblock a sink",
             "boil an egg", "reset my router", "write a cover letter", "knit a scarf"],
    "topic": ["the moon", "the roman empire", "black holes", "the eiffel tower", "penguins", "the olympics",
              "volcanoes", "the stock market", "dinosaurs", "the pyramids", "sharks", "jupiter"],
    "errand": ["call the bank", "pay the bills", "buy a birthday card", "book the car in for a service",
               "post the letter", "pick up the kids", "renew my passport", "take the bins out"],
    "place": ["a pharmacy", "a petrol station", "a good pizza place", "the nearest bank", "a cash machine",
              "the train station", "a vet", "the library"],
    "booking": ["a table for two", "a taxi", "a haircut", "a dentist appointment", "cinema tickets"],
    "minutes": ["ten minutes", "five minutes", "an hour", "twenty minutes", "3 minutes", "half an hour", "90 seconds"],
    "hour": ["seven", "6 am", "half past six", "7:30", "noon", "eight tomorrow"],
}  # fmt: skip
ERRANDS = ["order more {item}", "buy {item}", "add {item} to the shopping list", "we need {item}",
           "get me some {item}", "order {item} online", "put {item} on the list", "are we out of {item}",
           "how much does {item} cost", "remind me to buy {item}", "where did I put the {item}"]  # fmt: skip
ITEMS = ["milk", "batteries", "dog food", "paper towels", "coffee", "tape", "glue", "light bulbs", "stamps",
         "envelopes", "shampoo", "socks", "a new phone charger", "printer ink", "bin bags"]  # fmt: skip
# Devices a set may not hold, each with the words of a set that would hold it or something like it.
OTHER_DEVICES: dict[str, set[str]] = {
    "dishwasher": {"kitchen", "dishes"}, "fridge": {"kitchen", "fridge"}, "freezer": {"kitchen", "freezer"},
    "washing machine": {"laundry", "washing"}, "tv": {"tv", "television"}, "television": {"tv", "television"},
    "front door": {"door", "lock"}, "garage door": {"door", "garage"}, "radio": {"radio", "music"},
    "kettle": {"kitchen", "kettle"}, "coffee machine": {"kitchen", "coffee"}, "microwave": {"kitchen", "oven"},
    "thermostat": {"heating", "heater", "temperature", "thermostat"}, "air conditioning": {"air", "cooling"},
    "sprinkler": {"garden", "water", "watering", "irrigation", "lawn", "sprinkler"}, "car": {"car", "garage"},
    "doorbell camera": {"door", "camera"}, "vacuum": {"vacuum", "cleaning"}, "toaster": {"kitchen", "toast"},
    "speaker": {"speaker", "music"}, "oven": {"kitchen", "oven", "cooking", "bake"}, "printer": {"printer"},
    "alarm system": {"alarm", "security"}, "blinds": {"blinds", "window"}, "curtains": {"curtains", "window"},
    "computer": {"computer"}, "lawn mower": {"garden", "lawn", "mower"}, "hot tub": {"tub", "pool", "spa"},
    "pool pump": {"pool", "pump"}, "projector": {"projector"}, "lathe": {"workshop", "lathe", "machine"},
    "dryer": {"laundry", "dryer"}, "garden lights": {"garden", "lights", "light"}, "robot vacuum": {"vacuum"},
    "boiler": {"heating", "heater", "boiler", "water"}, "electric blanket": {"blanket", "bed"},
    "timer": {"timer"}, "alarm clock": {"alarm", "clock"},
}  # fmt: skip
OTHER_DEVICE_FRAMES = ["turn on the {d}", "turn off the {d}", "start the {d}", "open the {d}", "lock the {d}",
                       "set the {d} to {n}", "switch the {d} on", "is the {d} running", "empty the {d}",
                       "run the {d}", "close the {d}", "unlock the {d}", "set the {d} to {n} degrees",
                       "fix the {d}", "clean the {d}", "when was the {d} last serviced",
                       "set a {d} for {n} minutes"]  # fmt: skip

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
        "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]  # fmt: skip
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
    if n < 10000 and rng and n % 100 >= 10 and n // 100 % 10 and rng.random() < 0.25:
        # "two twenty", "twelve fifty": how settings are read out
        return number_words(n // 100, rng) + " " + number_words(n % 100, rng)
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        head = ("a" if hundreds == 1 and rng and rng.random() < 0.3 else ONES[hundreds]) + " hundred"
        if rest == 0:
            return head
        joiner = rng.choice([" and ", " "]) if rng else " and "
        return head + joiner + number_words(rest, rng)
    if rng and n < 10000 and n % 100 == 0 and n // 100 % 10 and rng.random() < 0.4:
        return number_words(n // 100, rng) + " hundred"  # "fifteen hundred"
    thousands, rest = divmod(n, 1000)
    head = "a thousand" if thousands == 1 and rng and rng.random() < 0.3 else number_words(thousands, rng) + " thousand"
    return head + ("" if rest == 0 else " " + number_words(rest, rng))


# --- how a command is read --------------------------------------------------------------


@dataclass
class Example:
    """One request and the command it should become."""

    text: str
    command: dict[str, Any]


@dataclass
class Reading:
    """The words a person could use for one command, read from its name and description."""

    command: Command
    verb: str  # the action ("set", "water", "power up"), or ""
    obj: list[str]  # ways to name what it acts on ("the pump pressure", "the lathe's spindle speed")
    particle: str  # "on"/"off" when the name ends in one
    clause: str  # the description's first clause, lowercased ("water one zone of the garden now ...")
    pair: tuple[str, str] | None  # the description's own on/off halves ("enable ...", "disable ...")
    value_phrases: dict[int, list[str]] = field(default_factory=dict)  # "0 cancels the delay": {0: [...]}
    # enum values that are also a word of another command's name ("fan" as an oven mode, beside
    # set_fan_speed), with that other command's words: said alone, such a value is taken for the other
    # command, so it is said exactly (no synonyms) and only with a word of this command's own
    clashes: dict[str, set[str]] = field(default_factory=dict)
    # objects named only with the description's own verb: "pause the daily schedule for 3 days" does not
    # make "the daily schedule should be 3 days" a rain delay
    verb_objects: list[str] = field(default_factory=list)
    # other names the description gives an enum value in brackets: "moonlight (a dim blue night light)"
    value_aliases: dict[str, list[str]] = field(default_factory=dict)

    @property
    def name_words(self) -> list[str]:
        return self.command.name.lower().split("_")


def _first_clause(description: str) -> str:
    return re.split(r"[.:;]|, (?:for example|e\.g\.|such as)|\(", description.strip(), maxsplit=1)[0].strip().lower()


def glosses(description: str) -> list[tuple[str, list[str]]]:
    """What a description explains in brackets: "the air bubbler (air pump)" -> ("the air bubbler", ["air pump"]).

    Each gloss is split at "or" and commas; articles go, and so do numbers and long asides ("(0 to 23)",
    "(for example after rain)"). A gloss of three words or more also gives its last two ("night light").
    """
    out = []
    for before, inside in re.findall(r"([A-Za-z][\w' -]*?) \(([^()]*)\)", description):
        names = []
        for part in re.split(r",| or ", inside.lower()):
            words = re.sub(r"^(?:a|an|the|also|aka|i\.e\.|called)\s+", "", part.strip()).split()
            if not words or len(words) > 4 or any(ch.isdigit() for w in words for ch in w):
                continue
            if words[0] in ("for", "e.g.", "such", "see", "when", "if", "which", "that", "in", "from", "to"):
                continue
            names.append(" ".join(words))
            if len(words) > 2:
                names.append(" ".join(words[-2:]))
        if names:
            out.append((" ".join(before.lower().split()[-3:]), names))
    return out


def _verb_of(clause: str) -> tuple[str, str]:
    """(verb, rest) of an imperative clause: "power up one machine" -> ("power up", "one machine")."""
    words = clause.split()
    if len(words) > 2 and words[1] == "or":  # "stop or cancel the timer": the first verb, the shared object
        words = [words[0], *words[3:]]
    if len(words) > 1 and f"{words[0]} {words[1]}" in VERBS:
        return f"{words[0]} {words[1]}", " ".join(words[2:])
    return (words[0], " ".join(words[1:])) if words else ("", "")


def read_command(c: Command) -> Reading:
    words = c.name.lower().split("_")
    particle = words[-1] if len(words) > 1 and words[-1] in ("on", "off") else ""
    clause = _first_clause(c.description)
    desc_verb, rest = _verb_of(clause)
    name_verb = words[0] if words[0] in VERBS and len(words) > 1 else ""
    verb = desc_verb if desc_verb in VERBS or not name_verb else name_verb
    switches = {a.name.lower() for a in c.args if a.type == "boolean"}  # "enabled" names no thing
    content = [w for w in words if w not in STOP_WORDS and w != name_verb and w not in switches and w != particle]
    obj = []
    if content:
        obj.append(" ".join(content))
    # the description's object, up to where the value would go: "the lathe's spindle speed"
    head = re.split(
        r" (?:in|to|for|by|at|from|with|on|off|or|that|which|now|and)\b| (?:a|one) number", rest, maxsplit=1
    )
    head = re.sub(r"^(?:all|every) ", "", head[0].strip())
    verb_objects = []
    if desc_verb in VERBS and head and not re.match(r"^(one|a|an)\b", head) and len(head.split()) <= 6:
        obj.append(head)
        if desc_verb not in SETTING_VERBS:
            verb_objects.append(head)
        # the thing itself, as people name it when they set it: "the extractor fan speed" -> "the extractor fan"
        thing = re.sub(rf"(?:'s)?(?: (?:{'|'.join(ATTRIBUTES)}))+$", "", head)
        # or its owner, by which people name what they set: "the heater's target water temperature" -> "the heater"
        if owner := re.match(r"^(.+?)'s ", head):
            thing = owner[1]
        if thing != head and thing.split()[-1] not in STOP_WORDS:
            obj.append(thing)
    pair = _pair(clause)
    value_phrases = _value_phrases(c.description, obj)
    value_aliases: dict[str, list[str]] = {}
    for named, names in glosses(c.description):
        said = named.split()
        values = [str(v) for a in c.args for v in a.enum if said[-len(str(v).split()) :] == str(v).lower().split()]
        if values:
            value_aliases.setdefault(values[0], []).extend(names)
        elif obj and said[-1] == obj[-1].split()[-1]:  # the thing the command acts on, by another name
            obj += names
    return Reading(
        c,
        verb or name_verb,
        obj or [c.name.replace("_", " ")],
        particle,
        clause,
        pair,
        value_phrases,
        verb_objects=verb_objects,
        value_aliases=value_aliases,
    )


# Verbs that end something, all of which ask for what "0 ends away mode" says 0 does.
ENDING_VERBS = ["cancel", "end", "stop", "clear", "finish"]


def _value_phrases(description: str, objects: list[str]) -> dict[int, list[str]]:
    """How a description says a value is asked for: "0 cancels the delay" -> {0: ["cancel the delay", ...]}.

    A verb that ends something comes with the others ("end the delay", "stop the rain delay"), and the thing
    also by the command's own name for it when they share a word ("the rain delay" for "the delay").
    """
    phrases: dict[int, list[str]] = {}
    for n, verb, thing in re.findall(r"\b(\d+) (?!is\b)(\w{2,}?)s ((?:the )?[a-z' ]{2,30}?)\s*(?:[.;,)]|$)",
                                     description.lower()):  # fmt: skip
        things = [thing]
        bare = thing.removeprefix("the ")
        if thing.split()[0] != "it":
            things += [bare if bare != thing else f"the {thing}"]
            things += [f"the {o}" for o in objects if len(o.split()) > 1 and set(o.split()) & set(bare.split())]
        verbs = ENDING_VERBS if verb in ENDING_VERBS else [verb]
        phrases.setdefault(int(n), []).extend(dict.fromkeys(f"{v} {t}" for v in verbs for t in things))
    return phrases


def _pair(clause: str) -> tuple[str, str] | None:
    """The description's two halves for a yes/no argument: "enable or disable X" -> ("enable X", "disable X")."""
    if m := re.match(r"^(\w+(?: \w+)?) or (\w+(?: \w+)?) (.+)$", clause):  # "enable or disable the rain sensor"
        a, b, rest = m.groups()
        if a in VERBS or b in VERBS:
            return f"{a} {rest}", f"{b} {rest}"
    if m := re.match(r"^(.+) on or off$", clause):  # "turn the misting system on or off"
        return f"{m[1]} on", f"{m[1]} off"
    if m := re.match(r"^(.+?),? or not$", clause):  # "let the extractor start by itself, or not"
        return m[1], f"don't {m[1]}"
    if m := re.match(r"^(.+) or (\w+) (it|them) (\w+)$", clause):  # "include a zone in X or leave it out"
        return m[1], f"{m[2]} it {m[4]}"
    return None


def _the(rng: random.Random, noun: str) -> str:
    if noun.startswith(("the ", "a ", "an ", "my ", "your ")) or "'s " in noun:
        return noun
    return rng.choice(["the ", "the ", "the ", "my ", ""]) + noun


def _synonym(rng: random.Random, phrase: str) -> str:
    """A phrase with its last word swapped for what people also call it ("the fan" -> "the extractor")."""
    words = phrase.split()
    if words and words[-1] in NOUNS and rng.random() < 0.5:
        words[-1] = rng.choice(NOUNS[words[-1]])
    return " ".join(words)


def _object(rng: random.Random, r: Reading) -> str:
    return _synonym(rng, rng.choice(r.obj))


def _verb(rng: random.Random, verb: str, fallback: str = "set") -> str:
    return rng.choice(VERBS.get(verb) or VERBS[fallback] + ([verb] if verb else []))


# --- how values are said ----------------------------------------------------------------

UNIT_WORDS = {  # keyed by edge.commands.values.UNITS, in its order
    "celsius": ["degrees", "degrees", "degrees celsius", "degrees C", "°C", "C", ""],
    "temperature": ["degrees", "degrees", "degrees celsius", "°C", ""],
    "degrees": ["degrees", "degrees", "°", ""],
    "fahrenheit": ["degrees", "degrees fahrenheit", "F", "°F"],
    "minutes": ["minutes", "minutes", "minutes", "mins", "min"],
    "seconds": ["seconds", "secs", "seconds"],
    "hours": ["hours", "hours", "hrs"],
    "days": ["days", "days", "days"],
    "weeks": ["weeks"],
    "percent": ["percent", "%", "per cent", ""],
    "rpm": ["rpm", "rpm", "revs", "revolutions per minute", "RPM", ""],
    "revolutions": ["rpm", "rpm", "revs", "revolutions per minute", "RPM", ""],
    "litres": ["litres", "liters", "l"],
    "metres": ["metres", "meters", "m"],
    "meters": ["meters", "metres", "m"],
}
TIME_UNITS = tuple(SECONDS)  # the units counted in time, as the runtime converts them
# Durations people say in other words, by minutes.
DURATIONS = {
    1: ["a minute", "one minute"], 15: ["a quarter of an hour", "quarter of an hour"],
    30: ["half an hour", "thirty minutes", "a half hour"], 45: ["three quarters of an hour", "forty five minutes"],
    60: ["an hour", "one hour", "a full hour", "sixty minutes"],
    90: ["an hour and a half", "one and a half hours", "ninety minutes", "one hour thirty minutes"],
    120: ["two hours", "a couple of hours"], 150: ["two and a half hours", "two hours and thirty minutes"],
    180: ["three hours"],
}  # fmt: skip
# Shares people say in words, by percent.
PERCENT_WORDS = {25: ["a quarter", "quarter"], 50: ["half", "a half"], 75: ["three quarters"],
                 100: ["all", "the whole lot", "all of it"], 10: ["a tenth"], 33: ["a third"]}  # fmt: skip
DAY_WORDS = {1: ["a day", "one day", "tomorrow", "24 hours"], 2: ["a couple of days", "two days"],
             7: ["a week", "one week", "seven days"], 14: ["two weeks", "a fortnight", "fourteen days"]}  # fmt: skip


def unit_of(arg: Arg, r: Reading | None = None) -> str | None:
    """The unit an argument is counted in, as the runtime reads it (``edge.commands.values.unit_of``)."""
    return arg_unit(arg, r.command.description if r else "")


def count_words(arg: Arg, r: Reading | None = None) -> list[str]:
    """What an argument without a unit counts, when its name is a plural noun: "portions" (and "servings"
    where the description says "portions is how many servings"), so "two portions" is said, not a bare 2."""
    name = arg.name.lower().replace("_", " ")
    if arg.type != "integer" or not re.fullmatch(r"[a-z]+[^s]s", name) or name in ("status", "yes", "this"):
        return []
    words = [name]
    if r is not None:
        words += re.findall(
            rf"\b{name} (?:is|are|means?) (?:the )?(?:how many|number of) (\w+)", r.command.description.lower()
        )
    return words


def say_hour(rng: random.Random, hour: int) -> str:
    """An hour of the day as people say it: "6 am", "six in the morning", "18:00", "midnight"."""
    if hour == 0 and rng.random() < 0.6:
        return "midnight"
    if hour == 12 and rng.random() < 0.6:
        return "noon" if rng.random() < 0.5 else "midday"
    h12 = hour % 12 or 12
    said = number_words(h12) if rng.random() < 0.4 else str(h12)
    part = (
        "in the morning"
        if hour < 12
        else "in the afternoon"
        if hour < 18
        else "in the evening"
        if hour < 22
        else "at night"
    )
    return rng.choice(
        [f"{said} am" if hour < 12 else f"{said} pm", f"{said}{'am' if hour < 12 else 'pm'}", f"{said} {part}",
         f"{hour:02d}:00", f"{said} o'clock {part}", f"{h12} {'a.m.' if hour < 12 else 'p.m.'}"]
    )  # fmt: skip


def say_number(rng: random.Random, arg: Arg, value: int | float, r: Reading | None = None) -> str:
    """How a person says ``value`` for ``arg``: digits or words, with a unit when the argument has one."""
    if is_hour_of_day(arg):
        return say_hour(rng, int(value))
    if isinstance(value, float) and not value.is_integer():
        spoken = str(value)
    else:
        spoken = number_words(int(value), rng) if rng.random() < 0.4 else str(int(value))
    unit = unit_of(arg, r)
    if unit is None and (counted := count_words(arg, r)) and rng.random() < 0.7:
        word = rng.choice(counted)
        return f"{spoken} {word[:-1] if value == 1 else word}"
    if unit == "minutes" and int(value) in DURATIONS and rng.random() < 0.6:
        return rng.choice(DURATIONS[int(value)])
    if unit == "days" and int(value) in DAY_WORDS and rng.random() < 0.5:
        return rng.choice(DAY_WORDS[int(value)])
    if unit == "percent" and int(value) in PERCENT_WORDS and rng.random() < 0.5:
        return rng.choice(PERCENT_WORDS[int(value)])
    if unit is None:
        return spoken
    word = rng.choice(UNIT_WORDS[unit])
    if value == 1 and unit in TIME_UNITS:
        word = unit[:-1]
    if word in ("°C", "°", "C", "°F", "F", "%") and spoken.isdigit():
        return spoken + rng.choice(["", " "]) + word if word not in ("°", "%") else spoken + word
    return f"{spoken} {word}".strip()


def level_names(arg: Arg, description: str) -> dict[int, list[str]]:
    """Words for points of a small integer range ("off", "low", "max"), from the range and the description."""
    if arg.type != "integer" or arg.minimum is None or arg.maximum is None or arg.maximum - arg.minimum > 10:
        return {}
    low, high = int(arg.minimum), int(arg.maximum)
    names: dict[int, list[str]] = {high: ["max", "maximum", "full", "full power", "full blast", "high", "top",
                                          "the highest setting", "as high as it goes", "flat out"]}  # fmt: skip
    first = low + 1 if low == 0 else low
    names.setdefault(first, []).extend(["low", "the lowest setting", "minimum", "min", "gentle"])
    if high - first >= 2:
        names.setdefault((first + high) // 2, []).extend(["medium", "middle", "mid", "halfway"])
    for n, word in re.findall(r"(\d+) is (?:the )?(\w+)", description.lower()):
        names.setdefault(int(n), []).append(word)
    return names


def _value(rng: random.Random, arg: Arg, unit: str | None = None) -> Any:
    if arg.type == "enum":
        return rng.choice(arg.enum)
    if arg.type == "boolean":
        return rng.random() < 0.5
    if arg.type == "string":
        return rng.choice(["note", "hello", "test", "reminder"])[: arg.max_length]
    low = arg.minimum if arg.minimum is not None else 0
    high = arg.maximum if arg.maximum is not None else low + 100
    if arg.type == "number":
        return round(rng.uniform(low, high), 1)
    low, high = int(low), int(high)
    specials = {"minutes": DURATIONS, "days": DAY_WORDS, "percent": PERCENT_WORDS}.get(unit or "", {})
    if specials and rng.random() < 0.3:
        return rng.choice([v for v in specials if low <= v <= high] or [low])
    # round values are what people say most: 180 degrees, 10 minutes, 1200 rpm
    if high - low > 20 and rng.random() < 0.7:
        step = rng.choice([5, 10, 10, 25, 50, 100]) if high - low > 60 else 5
        if high - low > 1000:
            step = rng.choice([50, 100, 100, 250, 500])
        rounded = [v for v in range(low, high + 1) if v % step == 0]
        if rounded:
            return rng.choice(rounded)
    return rng.randint(low, high)


def enum_words(
    rng: random.Random, arg: Arg, value: Any, exact: Iterable[str] = (), aliases: dict[str, list[str]] | None = None
) -> str:
    """An enum value as said: whole, by one word no other value has ("flower borders" -> "borders"), or by a
    name the description gives it (``aliases``).

    A value in ``exact`` (one that names another command too) is said as it is: a synonym of the
    other command's device ("fan" -> "extractor") would teach the model the other command's words.
    """
    text = str(value)
    if text in exact:
        return text
    if aliases and text in aliases and rng.random() < 0.35:
        return rng.choice(aliases[text])
    if text in NOUNS and rng.random() < 0.3:
        return rng.choice(NOUNS[text])
    words = text.split()
    if len(words) > 1 and rng.random() < 0.25:
        others = {w for v in arg.enum if v != value for w in str(v).split()}
        own = [w for w in words if w not in others and w not in STOP_WORDS]
        if own:
            return rng.choice(own)
    return text


def _fill(clause: str, r: Reading, rng: random.Random, values: dict[str, Any]) -> str:
    """The description's clause with each argument's value put where the description speaks of it."""
    text = clause
    for a in r.command.args:
        v = values[a.name]
        if a.type == "enum":
            # "one zone of the garden", "a room", "one machine" -> the value
            pattern = rf"\b(?:one|a|an|the|each) {re.escape(a.name.lower())}\w*(?: of (?:the|your) \w+)?"
            said = _the(rng, enum_words(rng, a, v, r.clashes, r.value_aliases))
            text, n = re.subn(pattern, said, text, count=1)
            if not n:
                text, n = re.subn(r"\bit\b", said, text, count=1)  # "leave it out"
            if not n:
                prep = "to" if r.verb in ("set", "choose", "change", "switch") else rng.choice(["for", "in", "on"])
                text += f" {prep} {said}"
        elif a.type in ("integer", "number"):
            said = say_number(rng, a, v, r)
            pattern = r"\b(?:to |for |at )?(?:a|the) (?:number of|target|given) [\w ]+?(?= in |$|,)(?: in [\w ]+)?"
            text, n = re.subn(pattern, f"{'for' if unit_of(a, r) in TIME_UNITS else 'to'} {said}", text, count=1)
            if not n:
                cut = re.split(r" (?:in|at which|\(|to a) ", text, maxsplit=1)[0]
                text = f"{cut} {'for' if unit_of(a, r) in TIME_UNITS else 'to'} {said}"
    return text


# --- phrase frames, one per shape of command --------------------------------------------


def _set_number(rng: random.Random, r: Reading, arg: Arg) -> tuple[str, dict]:
    unit = unit_of(arg, r)
    described = [v for v in r.value_phrases if arg.in_range(v)]
    # a value the description gives a meaning ("0 cancels the delay") is a request of its own, not one
    # number of fifteen: asked as often as a command's other settings together would ask one of them
    value = rng.choice(described) if described and rng.random() < 0.2 else _value(rng, arg, unit)
    # "max", "medium" name points of a scale, not counts: no "max portions"
    levels = {} if count_words(arg, r) else level_names(arg, r.command.description)
    named = rng.choice(r.obj)
    obj = _synonym(rng, named)
    the = _the(rng, obj)
    if value in r.value_phrases and rng.random() < 0.5:  # "cancel the delay" for 0
        return rng.choice(r.value_phrases[value]), {arg.name: value}
    if value in levels and rng.random() < 0.5:
        word = rng.choice(levels[value])
        if word == "off":
            text = rng.choice([f"turn off {the}", f"switch {the} off", f"{obj} off", f"turn {the} off",
                               f"stop {the}", f"shut {the} off", f"{the} can go off now"])  # fmt: skip
        elif value == int(arg.maximum or 0) and rng.random() < 0.4:
            text = rng.choice([f"max {the}", f"max out {the}", f"crank {the} up", f"turn {the} all the way up",
                               f"{obj} all the way up", f"{obj} as high as it goes",
                               f"full power on {the}"])  # fmt: skip
        else:
            text = rng.choice([f"set {the} to {word}", f"turn {the} to {word}", f"{obj} on {word}",
                               f"put {the} on {word}", f"{obj} {word}", f"run {the} at {word}", f"{word} {obj}",
                               f"{word} {obj} please", f"make {the} {word}"])  # fmt: skip
        return text, {arg.name: value}
    said = say_number(rng, arg, value, r)
    if levels:  # a small scale: "level 2", "setting two"
        said = rng.choice([f"level {said}", f"setting {said}", said, said, f"number {said}"])
    if rng.random() < 0.3:
        return _fill(r.clause, r, rng, {arg.name: value}), {arg.name: value}
    verb = _verb(rng, r.verb)
    prep = "for" if unit in TIME_UNITS else rng.choice(["to", "to", "at"])
    if named in r.verb_objects:
        frames = [f"{verb} {the} {prep} {said}", f"{prep} {said}, {verb} {the}", f"{verb} {the} {prep} {said} please",
                  f"could you {verb} {the} {prep} {said}", f"I want to {verb} {the} {prep} {said}"]  # fmt: skip
        return rng.choice(frames), {arg.name: value}
    frames = [
        f"{verb} {the} {prep} {said}", f"{verb} {the} {prep} {said}", f"{obj} {prep} {said}", f"{obj} {said}",
        f"{obj}: {said}", f"I want {the} at {said}", f"can we have {the} at {said}", f"{said} on {the}",
        f"{the} should be {said}", f"make it {said}", f"{prep} {said}, {the}", f"change {the} to {said}",
        f"{said} for {the}", f"{the}, {said}", f"turn {the} up to {said}", f"turn {the} down to {said}",
        f"{verb} it {prep} {said}", f"{obj} needs to be {said}", f"let's do {said} on {the}",
    ]  # fmt: skip
    if unit not in TIME_UNITS:  # a level to hold, not a length of time
        frames += [f"keep {the} at {said}", f"hold {the} at {said}"]
    return rng.choice(frames), {arg.name: value}


def _choose(rng: random.Random, r: Reading, arg: Arg) -> tuple[str, dict]:
    """One choice from a list: start a machine, pick a mode, water a zone."""
    value = _value(rng, arg)
    said = enum_words(rng, arg, value, r.clashes, r.value_aliases)
    the = _the(rng, said)
    if rng.random() < 0.3:
        return _fill(r.clause, r, rng, {arg.name: value}), {arg.name: value}
    verb = _verb(rng, r.verb, "choose")
    obj = _object(rng, r)
    frames = [f"{verb} {the}", f"{verb} {the}", f"{verb} {the} now", f"{the}, {verb}", f"{said} {arg.name}",
              f"{arg.name} {said}", f"{obj} {said}", f"{said} please"]  # fmt: skip
    if r.verb in ("set", "choose", "change", "switch", "select", "use"):
        frames += [f"{verb} {_the(rng, obj)} to {said}", f"use {said}", f"switch to {said}", f"put it on {said}",
                   f"I want {said}", f"{said} {arg.name} please", f"change the {arg.name} to {said}"]  # fmt: skip
    switched_on = _switched_on(arg)
    if value == switched_on:  # a choice that includes "off": its first other value is what "on" means
        frames += [f"{rng.choice(ON_VERBS[:2])} {_the(rng, obj)}", f"{obj} on", f"switch {_the(rng, obj)} on"]
    elif switched_on is not None and str(value).lower() == "off":
        frames += [f"{rng.choice(OFF_VERBS[:2])} {_the(rng, obj)}", f"{obj} off", f"switch {_the(rng, obj)} off"]
    if r.verb in ("start", "stop", "power up", "power down", "enable", "disable"):
        on = r.verb in ("start", "power up", "enable")
        frames += [f"{said} {'on' if on else 'off'}", f"{'get' if on else 'stop'} {the} {'going' if on else 'running'}",
                   f"I {'need' if on else 'am done with'} {the}", f"{said} {'go' if on else 'stop'}"]  # fmt: skip
    return rng.choice(frames), {arg.name: value}


def _switched_on(arg: Arg) -> Any:
    """The value "on" stands for in a list of choices with an "off": the first other one, as the set lists
    them ("lights on" for daylight, moonlight, off), else None."""
    values = [str(v).lower() for v in arg.enum]
    if "off" not in values:
        return None
    return next(v for v, low in zip(arg.enum, values, strict=True) if low != "off")


def _boolean_phrase(rng: random.Random, r: Reading, on: bool, obj: str) -> str:
    """Saying yes or no to a command's one switch, in the description's words or in general ones."""
    if r.pair and rng.random() < 0.4:
        return r.pair[0 if on else 1]
    the = _the(rng, obj)
    verb = rng.choice(ON_VERBS if on else OFF_VERBS)
    word = "on" if on else "off"
    return rng.choice(
        [f"{verb} {the}", f"{verb} {the}", f"{the} {word}", f"{obj} {word}", f"{verb.split()[0]} {the} {word}"
         if " " in verb else f"{verb} {the}", f"{obj} {'enabled' if on else 'disabled'}",
         f"I want {the} {word}", f"{'start' if on else 'stop'} {the}",
         f"{the} {'needs to be on' if on else 'can go off'}"]
    )  # fmt: skip


def _switch(rng: random.Random, r: Reading, place: Arg | None, state: Arg) -> tuple[str, dict]:
    """An on/off switch, alone or for one place or thing of a list."""
    on = rng.random() < 0.5
    where = _value(rng, place) if place else None
    args = {state.name: on} | ({place.name: where} if place else {})
    args = {a.name: args[a.name] for a in r.command.args}
    obj = _object(rng, r)
    if place is None:
        return _boolean_phrase(rng, r, on, obj), args
    p = enum_words(rng, place, where, r.clashes, r.value_aliases)
    if r.pair and rng.random() < 0.4:
        return _fill(r.pair[0 if on else 1], r, rng, args), args
    verb = rng.choice(ON_VERBS if on else OFF_VERBS)
    word = "on" if on else "off"
    noun = obj.split()[-1]
    frames = [f"{verb} the {p} {noun}", f"{verb.split()[0]} the {p} {noun} {word}", f"{p} {noun} {word}",
              f"{noun} {word} {rng.choice(['in', 'at', 'for'])} the {p}", f"{verb} the {noun} for the {p}",
              f"{p} {word}", f"{verb} {p}", f"can I have the {p} {noun} {word}", f"the {p} {noun}, {word}"]  # fmt: skip
    for key, (yes, no) in SITUATIONS.items():
        if key in obj.split() and (yes if on else no):
            frames += [s.format(where=f" {rng.choice(['in', 'at', 'by'])} the {p}") for s in (yes if on else no)]
    return rng.choice(frames), args


def _place_and_number(rng: random.Random, r: Reading, place: Arg, number: Arg) -> tuple[str, dict]:
    """A value for one place or thing of a list: "water the back lawn for 10 minutes"."""
    unit = unit_of(number, r)
    args = {place.name: _value(rng, place), number.name: _value(rng, number, unit)}
    args = {a.name: args[a.name] for a in r.command.args}
    if rng.random() < 0.35:
        return _fill(r.clause, r, rng, args), args
    p = _the(rng, enum_words(rng, place, args[place.name], r.clashes, r.value_aliases))
    n = say_number(rng, number, args[number.name], r)
    verb = _verb(rng, r.verb)
    prep = "for" if unit in TIME_UNITS else "to"
    text = rng.choice(
        [f"{verb} {p} {prep} {n}", f"{verb} {p} {prep} {n}", f"{p} {prep} {n}", f"{p}, {n}", f"{p} {n}",
         f"{n} on {p}", f"{verb} {p}, {n}", f"give {p} {n}", f"{n} for {p}", f"{verb} {p} {prep} {n} please",
         f"{p} needs {n}", f"can you {verb} {p} {prep} {n}",
         f"{prep} {n}, {verb} {p}", f"{verb} {n} on {p}"]
    )  # fmt: skip
    return text, args


def _no_args(rng: random.Random, r: Reading, readings: list[Reading]) -> tuple[str, dict]:
    obj = _object(rng, r)
    the = _the(rng, obj)
    if r.particle in ("on", "off"):
        return _boolean_phrase(rng, r, r.particle == "on", obj), {}
    if r.verb in ("report", "show", "tell", "list", "say", "describe") or r.command.name in (
        "status",
        "report",
        "info",
    ):
        return _question(rng, r, readings), {}
    verb = _verb(rng, r.verb, "start")
    frames = [r.clause, r.clause, f"{verb} {r.clause.split(' ', 1)[-1]}" if " " in r.clause else r.clause,
              f"{verb} {the}", f"{the}, {verb}", " ".join(r.name_words), " ".join(r.name_words),
              f"{verb} {the} now", f"{verb} it all", f"{verb} everything"]  # fmt: skip
    if r.verb in ("stop", "cancel", "cut", "power down", "halt"):
        frames += [f"enough, {verb} it", f"{verb} it", "that's enough", "stop, stop"]
    if r.verb == "cancel" or "cancel" in r.clause:
        frames += [f"never mind {the}", f"I don't need {the} anymore", f"get rid of {the}"]
    return rng.choice(frames), {}


def _question(rng: random.Random, r: Reading, readings: list[Reading]) -> str:
    """A question about how things stand, built from the status description and the set's own objects."""
    items = [i.strip() for i in re.split(r",| and ", r.clause.split(" ", 1)[-1]) if i.strip()]
    others = [o for x in readings if x is not r and x.command.args for o in x.obj]
    thing = rng.choice(others) if others else "everything"
    return rng.choice(
        [
            "status", "status report", "what's the status", "give me a status update", "what's going on",
            "what's happening", "is anything on", "report", "give me an update", "how is everything",
            "tell me what's running", "what's running", "check everything", "anything still on?",
            f"is {_the(rng, thing)} on", f"what's {_the(rng, thing)} doing", f"what's {_the(rng, thing)} set to",
            f"is {_the(rng, thing)} still running", f"did I leave {_the(rng, thing)} on", f"how's {_the(rng, thing)}",
            r.clause, *_asked(rng, items, readings),
        ]
    )  # fmt: skip


def _asked(rng: random.Random, items: list[str], readings: list[Reading]) -> list[str]:
    """Questions about the things a status report covers ("soil moisture" -> "what's the soil moisture",
    "how wet is the soil")."""
    if not items:
        return ["status"]
    item = rng.choice(items)
    if item.split()[0] in ("which", "what", "how", "when", "where", "whether"):
        return [f"{item}?", f"tell me {item}", item]
    return [f"what's {_the(rng, item)}", f"how is {_the(rng, item)}", f"tell me about {_the(rng, item)}", f"{item}?",
            *_by_measure(rng, item), *_by_quality(rng, item, readings)]  # fmt: skip


def _item_words(item: str) -> list[str]:
    """A status item's words, lower case, possessives dropped: "each room's temperature" -> each room temperature."""
    return item.lower().replace("'s", "").split()


def _by_measure(rng: random.Random, item: str) -> list[str]:
    """ "what mode is the pump in" for "pump mode": the measure asked after, its owner the subject."""
    words = _item_words(item)
    if words and words[0] in ("the", "each", "every"):
        words = words[1:]
    if len(words) < 2:
        return []
    owner, measure = _the(rng, " ".join(words[:-1])), words[-1]
    return [f"what {measure} is {owner} {rng.choice(['in', 'on', 'at', 'set to'])}",
            f"which {measure} is {owner} {rng.choice(['in', 'on', 'using'])}"]  # fmt: skip


# How people ask after a measure by what it feels like, keyed by the measure a status reports
QUALITIES = {"temperature": ["warm", "hot", "cold", "chilly"], "moisture": ["wet", "dry", "damp"],
             "humidity": ["humid", "damp", "dry"], "level": ["high", "low", "full"], "speed": ["fast"],
             "pressure": ["strong", "high"], "brightness": ["bright", "dark"]}  # fmt: skip


def _by_quality(rng: random.Random, item: str, readings: list[Reading]) -> list[str]:
    """ "how warm is the living room" for "each room's temperature", "how wet is the soil" for "soil moisture"."""
    words = _item_words(item)
    measure = next((w for w in words if w in QUALITIES), None)
    if measure is None:
        return []
    q = rng.choice(QUALITIES[measure])
    owner = [w for w in words[: words.index(measure)] if w not in STOP_WORDS and w not in ("each", "every")]
    places = [v for r in readings for a in r.command.args if a.name in owner or f"{a.name}s" in owner for v in a.enum]
    if places:
        place = _the(rng, str(rng.choice(places)))
        asked = [f"how {q} is {place}", f"how {q} is it in {place}", f"is it {q} in {place}", f"is {place} {q}"]
        if measure == "temperature":
            asked += [f"what temperature is it in {place}", f"what's the temperature in {place}"]
    elif owner:
        thing = _the(rng, " ".join(owner))
        asked = [f"how {q} is {thing}", f"is {thing} {q}", f"is {thing} too {q}"]
        if measure == "temperature":
            asked += [f"what temperature is {thing}", f"how {q} is {thing} right now"]
    else:
        asked = [f"how {q} is it in here", f"is it {q} in here", f"how {q} is it"]
        if measure == "temperature":
            asked += ["what temperature is it in here", "what's the temperature like"]
    return asked


def _described(rng: random.Random, r: Reading) -> tuple[str, dict]:
    """Shapes the frames do not know: the description filled in, or its words with each argument's value."""
    args = {a.name: _value(rng, a, unit_of(a, r)) for a in r.command.args}
    if rng.random() < 0.5:
        return _fill(r.clause, r, rng, args), args
    said = [
        f"{a.name.replace('_', ' ')} {say_number(rng, a, args[a.name], r) if a.type in ('integer', 'number') else args[a.name]}"  # noqa: E501
        for a in r.command.args
    ]
    return f"{' '.join(r.name_words)} {' and '.join(said)}", args


def _pattern(r: Reading, readings: list[Reading]) -> Maker:
    """The phrase frame for one command, chosen by its arguments' types."""
    args = r.command.args
    numbers = [a for a in args if a.type in ("integer", "number")]
    enums = [a for a in args if a.type == "enum"]
    booleans = [a for a in args if a.type == "boolean"]
    if booleans and len(args) <= 2 and len(enums) == len(args) - 1:
        return lambda rng: _switch(rng, r, enums[0] if enums else None, booleans[0])
    if len(args) == 1 and numbers:
        return lambda rng: _set_number(rng, r, numbers[0])
    if len(args) == 1 and enums:
        return lambda rng: _choose(rng, r, enums[0])
    if len(args) == 2 and len(enums) == 1 and len(numbers) == 1:
        return lambda rng: _place_and_number(rng, r, enums[0], numbers[0])
    if not args:
        return lambda rng: _no_args(rng, r, readings)
    return lambda rng: _described(rng, r)


def _situation(rng: random.Random, r: Reading, text: str, args: dict) -> str:
    """Sometimes the reason comes first: "it's freezing in here, heater to 20" (only before turning up or on)."""
    for a in r.command.args:
        v = args[a.name]
        if (
            (a.type == "boolean" and not v)
            or (a.type == "integer" and a.maximum and v < (a.maximum + (a.minimum or 0)) / 2)
            or (a.type == "enum" and str(v).lower() == "off")  # "it's cold in here, heating off" inverts it
        ):
            return text
    for key, (yes, _) in SITUATIONS.items():
        if yes and any(key in o.split() for o in r.obj) and rng.random() < 0.25:
            return rng.choice(yes).format(where="") + rng.choice([", ", " so ", ". ", ", can you "]) + text
    return text


def _dress(rng: random.Random, text: str, wishes: bool = True) -> str:
    """As people type or say it: orders or questions, polite or curt, fillers, wishes, punctuation, case."""
    imperative = text.split()[0].lower() in IMPERATIVE if text.split() else False
    roll = rng.random()
    question = False
    if imperative and roll < 0.3:
        before = rng.choice(POLITE_BEFORE)
        question = before.startswith(("could", "can", "would"))
        text = before + text
    elif imperative and wishes and roll < 0.4:
        text = rng.choice(WISHES) + text
        question = text.startswith(("can", "could"))
    if rng.random() < 0.25:
        text = rng.choice(OPENERS) + text
    if rng.random() < 0.25:
        text += rng.choice(AFTER)
    if question and rng.random() < 0.7:
        text += "?"
    elif rng.random() < 0.3:
        text += rng.choice([".", ".", "!", "..."])
    if rng.random() < 0.35:
        text = text[0].upper() + text[1:]
    elif rng.random() < 0.05:
        text = text.upper()
    return " ".join(text.split())


def _words(text: str) -> set[str]:
    return {w.removesuffix("'s") for w in re.findall(r"[a-z']+", text.lower())} - STOP_WORDS


def own_words(r: Reading) -> set[str]:
    """The words that name a command: its name's, its object's and its verbs', without its enum values."""
    values = {w for a in r.command.args for v in a.enum for w in _words(str(v))}
    verbs = {w for v in VERBS.get(r.verb, [r.verb]) for w in _words(v)}
    return (_words(" ".join(r.name_words)) | {w for o in r.obj for w in _words(o)} | verbs) - values


def find_clashes(readings: list[Reading]) -> None:
    """Fill each reading's ``clashes``: its enum values that are a word of another command's name."""
    for r in readings:
        for a in r.command.args:
            for v in a.enum:
                others = [o for o in readings if o is not r and _words(str(v)) & set(o.name_words)]
                if others:
                    r.clashes[str(v)] = set().union(*(own_words(o) for o in others))


SETTINGS = {"mode", "time", "delay", "change", "status", "schedule", "zone", "duration", "timer", "power"}
# Knowledge about a thing, not its state: "how does a heater work" is no command of a heater's set. (Errands
# for one, "order a new tank light", were tried too: the tune set fell from 88.1% to 83.3%, light requests
# taken for unknown.)
KNOWLEDGE_FRAMES = ["how does a {t} work", "what kind of {t} should I buy", "who invented the {t}",
                    "how much does a new {t} cost", "tell me something interesting about the {t}",
                    "what is a {t} for", "where can I buy a {t}", "how do you spell {t}",
                    "what's the best brand of {t}", "how long does a {t} usually last"]  # fmt: skip


def ambiguous(text: str, args: dict[str, Any], r: Reading) -> bool:
    """Whether ``text`` says a clashing value of ``r`` with no word of ``r``'s own that the other command
    lacks: "fan please" could be the extractor fan; "put the oven on fan" cannot."""
    said = _words(text)
    for value in args.values():
        other = r.clashes.get(str(value))
        if other is not None and not (said & (own_words(r) - other)):
            return True
    return False


def vocabulary(commands: CommandSet) -> set[str]:
    """Every word of the set: its names, descriptions and enum values (a device it holds is not 'other')."""
    parts = [commands.name, commands.description]
    for c in commands.commands.values():
        parts += [c.name.replace("_", " "), c.description, *(str(v) for a in c.args for v in a.enum)]
    text = " ".join(parts)
    return set(re.findall(r"[a-z]+", text.lower())) - STOP_WORDS


def things(readings: list[Reading]) -> list[str]:
    """The devices the set's descriptions name ("tank light", "heater", "air bubbler"): not a command's own
    name ("feed fish") nor a setting of a thing ("water temperature", "oven mode")."""
    out = []
    for r in readings:
        for o in r.obj[1:]:
            noun = re.sub(r"^(?:the|my|a|an|running) ", "", o)
            last = noun.split()[-1] if noun else ""
            if "'s" in noun or len(noun.split()) > 3 or last in ATTRIBUTES or last in SETTINGS or last.endswith("ing"):
                continue
            if noun in out:
                continue
            out.append(noun)
    return out


def _general(rng: random.Random, avoid: set[str]) -> str:
    """A general request composed from :data:`GENERAL_FRAMES` (and :data:`PHONE_FRAMES` for a set with no timer,
    alarm or reminder), none of whose parts says a word of the set."""
    phone = [] if avoid & PHONE_WORDS else PHONE_FRAMES
    frame = rng.choice(GENERAL_FRAMES + phone)
    parts = {}
    for slot in re.findall(r"{(\w+)}", frame):
        # a phone job keeps its time ("set a timer for ten minutes") even where the set says "minutes"
        kept = frame in phone and slot in ("minutes", "hour")
        options = [o for o in GENERAL_PARTS[slot] if kept or not set(re.findall(r"[a-z]+", o)) & avoid]
        parts[slot] = rng.choice(options or [""])
    return " ".join(frame.format(**parts).split())


def _out_of_domain(rng: random.Random, avoid: set[str], nouns: list[str] = ()) -> str:
    roll = rng.random()
    if roll < 0.25:
        return rng.choice(OUT_OF_DOMAIN)
    if roll < 0.45:
        return _general(rng, avoid)
    if roll < 0.6:
        return rng.choice(ERRANDS).format(item=rng.choice(ITEMS))
    if roll < 0.75 and nouns:
        # a question about the set's own things that no command answers: what they are, not their state
        return rng.choice(KNOWLEDGE_FRAMES).format(t=rng.choice(nouns))
    devices = [d for d, near in OTHER_DEVICES.items() if not (set(d.split()) | near) & avoid]
    return rng.choice(OTHER_DEVICE_FRAMES).format(d=rng.choice(devices), n=rng.randint(1, 60))


def generate(commands: CommandSet, per_command: int = 300, seed: int = 0) -> list[Example]:
    """About ``per_command`` distinct requests for each command (fewer when a command has fewer phrasings)."""
    rng = random.Random(seed)
    readings = [read_command(c) for c in commands.commands.values() if c.name != commands.unknown]
    find_clashes(readings)
    makers: list[tuple[Maker, str, Reading | None]] = [(_pattern(r, readings), r.command.name, r) for r in readings]
    actions = makers[:]
    if commands.unknown:
        avoid = vocabulary(commands)
        nouns = things(readings)
        makers.append((lambda g: (_out_of_domain(g, avoid, nouns), {}), commands.unknown, None))
    examples: list[Example] = []
    seen: set[str] = set()
    for make, name, reading in makers:
        made, tries = 0, 0
        while made < per_command and tries < per_command * 20:
            tries += 1
            text, args = make(rng)
            if reading is not None:
                text = _situation(rng, reading, text, args)
                if len(actions) > 1 and rng.random() < 0.05:
                    # two requests in one breath: the first is done (one command per request)
                    other = rng.choice([m for m, n, _ in actions if n != name])
                    text += rng.choice([" and ", " and then ", ", then "]) + other(rng)[0]
            text = _dress(rng, text, wishes=reading is not None)
            if reading is not None and ambiguous(text, args, reading):
                continue
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
