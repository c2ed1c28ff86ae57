"""Spelled numbers to digits, so a request reads the same however its numbers were said.

One function, :func:`normalise`, used identically on training requests (``export.specialise``) and on
every request at run time (:class:`edge.commands.command_model.CommandModel`): the model only ever sees digits,
and never has to learn that "a hundred and eighty", "one eighty" and "180" are one value.

>>> normalise("set the oven to two hundred and twenty degrees")
'set the oven to 220 degrees'
>>> normalise("one twenty degrees for an hour and a half")
'120 degrees for 90 minutes'
>>> normalise("turn on one of the lights")
'turn on one of the lights'

The rules, in the order they apply:

- **Cardinals**: "zero" to "nineteen", tens ("forty-five", "forty five"), "hundred" and "thousand" with
  or without "and" ("two hundred and twenty" -> 220, "a hundred" -> 100, "twelve hundred" -> 1200,
  "2 hundred" -> 200), "minus"/"negative" before a number.
- **Read in pairs**: a number below 100 followed at once by one from 10 to 99 is how settings and years
  are read out: "one twenty" -> 120, "twelve fifty" -> 1250.
- **Decimals and halves**: "two point five" -> 2.5, "two and a half" -> 2.5.
- **Counting words**: "a couple of" / "a couple" -> 2, "a dozen" -> 12, "half a dozen" -> 6, "two dozen" -> 24.
- **Ordinals** from "third" on: "third" -> "3rd", "twenty first" -> "21st". "first" and "second" stay
  words: alone they are mostly "first, ..." and "a second", not positions.
- **A lone "one"** stays a word when it stands for a thing: "one of", "this one", "the one", "one by one";
  before a unit of time it is a count even so ("a one hour timer" -> "a 1 hour timer").
- **Numbers a recogniser wrote in digits** are one number: "1,250" -> 1250, "1000 200" -> 1200, "100 and
  80" (Whisper's "a hundred and eighty") -> 180, "1 thousand 2 hundred and fifty" -> 1250,
  "2 hundred and 20" -> 220.
- **Numbers a recogniser wrote as a word that sounds like one**, where only a number can stand: at the end
  of a request, after a word that names a point on a scale ("speed too" -> "speed 2", "level for" ->
  "level 4", "setting won" -> "setting 1").
- **Durations**: one rule, a duration with a part of an hour becomes whole minutes, and whole hours
  stay hours: "half an hour" -> "30 minutes", "a quarter of an hour" -> "15 minutes", "an hour and a
  half" and "one and a half hours" -> "90 minutes", "two and a half hours" -> "150 minutes",
  "an hour and ten minutes" -> "70 minutes"; "an hour" -> "1 hour", "two hours" -> "2 hours". Minutes
  are what appliances count in; a whole hour is left for the model, which sees "1 hour" and "2 hours"
  in training. Whole days and weeks are counted: "for a week" -> "for 1 week", "a fortnight" -> "2 weeks"
  ("twice a week" is a rate and stays).
- **Shares of a whole** become percentages: "a quarter of the water" -> "25 percent of the water", "half
  the tank" -> "50 percent of the tank", "three quarters of my" -> "75 percent of my"; so a share is a
  value of an argument counted in percent, and of no other (``values.py``).
- **Times of day** become 24-hour clock times: "9 pm" and "nine o'clock in the evening" -> "21:00",
  "5 a.m." -> "05:00", "11 at night" -> "23:00", "7:30 pm" -> "19:30", "6 every morning" -> "06:00 every
  morning" (a daily time stays daily), and "midnight" and "noon" after "at", "to", "for", "until",
  "from", "by", "before" or "after" -> "00:00" and "12:00": the model reads the hour off the digits
  instead of doing the arithmetic.

Everything else is left exactly as it was, spacing and capitals included.
"""

from __future__ import annotations

import re

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
        "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]  # fmt: skip
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
SMALL = {w: n for n, w in enumerate(ONES)} | {w: 10 * n for n, w in enumerate(TENS) if w}
SCALES = {"hundred": 100, "thousand": 1000}
ORDINALS = {"third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10,
            "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14, "fifteenth": 15, "sixteenth": 16,
            "seventeenth": 17, "eighteenth": 18, "nineteenth": 19, "twentieth": 20, "thirtieth": 30, "fortieth": 40,
            "fiftieth": 50, "sixtieth": 60, "seventieth": 70, "eightieth": 80, "ninetieth": 90}  # fmt: skip
# after a tens word "first" and "second" are ordinals too: "twenty first"
UNIT_ORDINALS = {"first": 1, "second": 2} | {w: n for w, n in ORDINALS.items() if n < 10}
# "one" that stands for a thing, not a count: "this one", "one of them"
ONE_AFTER = {"the", "this", "that", "which", "each", "every", "any", "no", "another", "other", "some", "a", "last",
             "next", "only", "same", "right", "wrong", "big", "small", "little", "new", "old", "one", "by"}  # fmt: skip
ONE_BEFORE = {"of", "by", "another", "at", "or"}
# counting words, longest first: "a couple of" before "a couple"
COUNTING = [(["a", "couple", "of"], "2"), (["half", "a", "dozen"], "6"), (["a", "couple"], "2"), (["a", "dozen"], "12")]
# The words that name a unit of time, and the unit each names: one table for the normaliser and values.py.
TIME_WORDS = {
    "second": "seconds", "seconds": "seconds", "sec": "seconds", "secs": "seconds",
    "minute": "minutes", "minutes": "minutes", "min": "minutes", "mins": "minutes",
    "hour": "hours", "hours": "hours", "hr": "hours", "hrs": "hours",
    "day": "days", "days": "days", "week": "weeks", "weeks": "weeks",
}  # fmt: skip

_TOKEN = re.compile(r"[A-Za-z]+|[0-9]+(?:\.[0-9]+)?|\s+|.", re.S)  # ASCII digits: int() refuses "²"


def _digit(word: str) -> bool:
    # past 15 digits a run of digits is no count anyone says (and Python refuses int() past 4300)
    return word.isascii() and word.isdigit() and len(word) <= 15


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class _Reader:
    """A cursor over the request's tokens that reads one spelled number at a time."""

    def __init__(self, text: str):
        self.tokens = _TOKEN.findall(text)
        self.low = [t.lower() for t in self.tokens]

    def word(self, i: int) -> str:
        return self.low[i] if 0 <= i < len(self.low) else ""

    def after(self, i: int, hyphen: bool = False) -> int:
        """Index of the first word after token ``i``, across spaces (and a hyphen when allowed)."""
        j = i + 1
        while j < len(self.low) and (self.low[j].isspace() or (hyphen and self.low[j] == "-")):
            j += 1
        return j

    def phrase(self, i: int, n: int) -> tuple[list[str], int]:
        """The ``n`` words from token ``i`` on, and the index after the last of them."""
        words = []
        for _ in range(n):
            words.append(self.word(i))
            end, i = i + 1, self.after(i)
        return words, end

    def before(self, i: int) -> str:
        j = i - 1
        while j >= 0 and self.low[j].isspace():
            j -= 1
        return self.word(j)

    def small(self, i: int) -> tuple[int, int] | None:
        """A number below 100 starting at ``i`` ("forty-five", "twelve"): (value, index after it)."""
        w = self.word(i)
        if w not in SMALL:
            return None
        value, end = SMALL[w], i + 1
        if w in TENS:
            j = self.after(i, hyphen=True)
            if 0 < SMALL.get(self.word(j), 10) < 10:
                value, end = value + SMALL[self.word(j)], j + 1
        return value, end

    def cardinal(self, i: int) -> tuple[int, int] | None:
        """A whole number starting at ``i``: words with hundreds and thousands, or digits before a scale."""
        total, current, last, j, end = 0, 0, "", i, i
        while True:
            w = self.word(j)
            if not last and (w == "a" or _digit(w)) and self.word(self.after(j)) in SCALES:
                current, last = (1 if w == "a" else int(w)), "lead"  # "a hundred", "2 thousand"
            elif w in SMALL and last in ("", "hundred", "thousand", "and"):
                current, last = current + SMALL[w], "tens" if w in TENS else "small"
            elif last == "tens" and 0 < SMALL.get(w, 10) < 10:  # "forty-five", "forty five"
                current, last = current + SMALL[w], "small"
            elif w == "hundred" and last in ("", "lead", "small", "tens") and current < 100:
                current, last = max(current, 1) * 100, "hundred"
            elif w == "thousand" and last in ("", "lead", "small", "tens", "hundred") and total == 0:
                total, current, last = max(current, 1) * 1000, 0, "thousand"
            elif w == "and" and last in ("hundred", "thousand") and self.word(self.after(j)) in SMALL:
                last = "and"  # "two hundred and twenty"
            else:
                break
            end = j + 1
            j = self.after(j, hyphen=last == "tens")
        if not last:
            return None
        # read in pairs: "one twenty" -> 120, "twelve fifty" -> 1250; not before a scale ("five twenty
        # thousand") or a unit of time, where two numbers are two things ("zone two twenty minutes")
        if total == 0 and 0 < current < 100 and last in ("small", "tens"):
            read = self.small(self.after(end - 1))
            if read and read[0] >= 10 and self.word(self.after(read[1] - 1)) not in {*SCALES, *TIME_WORDS}:
                current, end = current * 100 + read[0], read[1]
        return total + current, end

    def number(self, i: int) -> tuple[float, int] | None:
        """A cardinal with its sign and fraction ("minus two point five", "two and a half")."""
        sign, start = 1, i
        if self.word(i) in ("minus", "negative"):
            sign, start = -1, self.after(i)
        read = self.cardinal(start)
        if read is None and _digit(self.word(start)):
            read = int(self.word(start)), start + 1  # "2 and a half", "3 dozen"
        if read is None:
            if self.word(start) == "point" and SMALL.get(self.word(self.after(start)), 10) < 10:
                read = (0, start)  # "point five"
            else:
                return None
        value: float = read[0]
        end = read[1]
        k = self.after(end - 1) if end > start else start
        if self.word(k) == "point" and SMALL.get(self.word(self.after(k)), 10) < 10:
            digits = ""
            while SMALL.get(self.word(j := self.after(k)), 10) < 10:
                digits += str(SMALL[self.word(j)])
                k = j
            value, end = float(f"{int(value)}.{digits}"), k + 1
        elif self.phrase(k, 3)[0] == ["and", "a", "half"]:
            value, end = value + 0.5, self.phrase(k, 3)[1]
        return sign * value, end

    def ordinal(self, i: int) -> tuple[int, int] | None:
        w = self.word(i)
        if w in ORDINALS:
            return ORDINALS[w], i + 1
        if w in TENS and w:
            j = self.after(i, hyphen=True)
            if self.word(j) in UNIT_ORDINALS:
                return SMALL[w] + UNIT_ORDINALS[self.word(j)], j + 1
        return None

    def stands_for_a_thing(self, i: int, end: int) -> bool:
        """A lone "one" that is a pronoun ("one of the lights", "this one"), not a count ("a one hour timer")."""
        return (
            end == i + 1
            and self.word(i) == "one"
            and (self.before(i) in ONE_AFTER or self.word(self.after(i)) in ONE_BEFORE)
            and self.word(self.after(i, hyphen=True)) not in TIME_WORDS
        )


def _suffix(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def _digits(text: str) -> str:
    """Every spelled number, counting word and ordinal in ``text`` as digits."""
    r = _Reader(text)
    out: list[str] = []
    i = 0
    while i < len(r.tokens):
        w = r.word(i)
        counted = next(((n, r.phrase(i, len(ws))[1]) for ws, n in COUNTING if r.phrase(i, len(ws))[0] == ws), None)
        if counted:  # "a couple of minutes" -> "2 minutes"
            out.append(counted[0])
            i = counted[1]
            continue
        if (ordinal := r.ordinal(i)) is not None:
            value, end = ordinal
            out.append(f"{value}{_suffix(value)}")
            i = end
            continue
        read = r.number(i)
        if read is not None and r.word(r.after(read[1] - 1)) == "dozen":  # "two dozen"
            read = read[0] * 12, r.after(read[1] - 1) + 1
        # digits alone are kept as typed ("07"); a lone "one" may be a thing, not a count
        if read is None or (_digit(w) and read[1] == i + 1) or r.stands_for_a_thing(i, read[1]):
            out.append(r.tokens[i])
            i += 1
            continue
        value, end = read
        out.append(_fmt(value))
        i = end
    return "".join(out)


# How a recogniser writes a spoken number in digits: "1,250", "1000 250" (one thousand two hundred and fifty), "100
# and 80" (a hundred and eighty). Each is one number; applied in this order, so "1000 200 and 50" is 1250.
_DIGIT_COMPOUNDS: list[tuple[re.Pattern, object]] = [
    (re.compile(r"(?<![\d.,])\d{1,3}(?:,\d{3})+(?![\d,])"), lambda m: m[0].replace(",", "")),
    (re.compile(r"(?<![\d.])([1-9]\d{0,11}000) ([1-9]\d\d)(?![\d.])"), lambda m: str(int(m[1]) + int(m[2]))),
    (re.compile(r"(?<![\d.])([1-9]\d{0,11}00) and ([1-9]\d?)(?![\d.:])"), lambda m: str(int(m[1]) + int(m[2]))),
]

# "two", "four", "one" and "eight" as Whisper may write them when nothing after them says they are numbers
_SOUNDS_LIKE = {"to": "2", "too": "2", "for": "4", "fore": "4", "won": "1", "ate": "8"}
_SCALE_POINT = re.compile(
    rf"\b(speed|level|setting|number|gear|mark|position|step|stage|notch) ({'|'.join(_SOUNDS_LIKE)})(?=[.!?,]*\s*$)",
    re.I,
)

_HOURS = r"(?:hours?|hrs?)"
_DURATIONS: list[tuple[re.Pattern, object]] = [
    # "an hour and a half", "2 hours and a half", "1 hour and 30 minutes", "an hour 15 minutes"
    (re.compile(rf"\b(an?|[0-9]{{1,6}}) {_HOURS} and a half\b", re.I),
     lambda m: f"{_hours(m[1]) * 60 + 30:g} minutes"),
    (re.compile(rf"\b(an?|[0-9]{{1,6}}) {_HOURS}(?: and)? ([0-9]{{1,6}}) (?:minutes?|mins?)\b", re.I),
     lambda m: f"{_hours(m[1]) * 60 + int(m[2]):g} minutes"),
    # "1.5 hours", "2.5 hours", "0.5 hours"
    (re.compile(rf"\b([0-9]{{1,6}}\.[0-9]{{1,6}}) {_HOURS}\b", re.I), lambda m: f"{round(float(m[1]) * 60):g} minutes"),
    (re.compile(r"\b(?:a |one )?half(?: an| a)? hour\b", re.I), lambda m: "30 minutes"),
    (re.compile(r"\b3 quarters of an? hour\b", re.I), lambda m: "45 minutes"),
    (re.compile(r"\b(?:a )?quarter(?: of an?|-)? ?hour\b", re.I), lambda m: "15 minutes"),
    (re.compile(r"\ban? hour\b", re.I), lambda m: "1 hour"),  # "a hour": how Whisper may write it
    # whole days and weeks as counts, so they ground a number: "a fortnight" -> "2 weeks"; only after a
    # word that starts a duration, as "once a day" and "twice a week" are rates, not lengths
    (re.compile(r"\ba fortnight\b", re.I), lambda m: "2 weeks"),
    (re.compile(r"\b(for|in|about|around|over|within|after|than|just|only) (?:a|one) (day|week)\b", re.I),
     lambda m: f"{m[1]} 1 {m[2]}"),
]  # fmt: skip


_WHOLE = r"(?:of )?(the|my|our|this|that)\b"
_SHARES: list[tuple[re.Pattern, object]] = [
    (re.compile(rf"\b(?:a |one )?half {_WHOLE}", re.I), lambda m: f"50 percent of {m[1]}"),
    (re.compile(rf"\b(?:a|one) quarter {_WHOLE}", re.I), lambda m: f"25 percent of {m[1]}"),
    (re.compile(rf"\b3 quarters {_WHOLE}", re.I), lambda m: f"75 percent of {m[1]}"),
]


_PART_OF_DAY = (
    r"in the morning|in the afternoon|in the evening|at night|tonight"
    r"|(?:every|each) (?:morning|afternoon|evening|night)"
)
_CLOCK = re.compile(
    rf"\b(\d{{1,2}})(?::(\d{{2}}))?\s*(?:o'?clock\s*)?(?:(a\.?m\.?|p\.?m\.?)(?![a-z])|({_PART_OF_DAY})\b)", re.I
)
# "at for every morning": a sound-alike number before what only a clock time is followed by
_CLOCK_POINT = re.compile(
    rf"\b(at|until|by|from) ({'|'.join(_SOUNDS_LIKE)})(?= (?:o'?clock|a\.?m\.?|p\.?m\.?|{_PART_OF_DAY})(?![a-z]))",
    re.I,
)


def _heard_digit(m: re.Match) -> str:
    """The word before a sound-alike number, then the number as a digit ("speed too" -> "speed 2")."""
    return f"{m[1]} {_SOUNDS_LIKE[m[2].lower()]}"


_NAMED_TIME = re.compile(r"\b(at|to|for|until|from|by|before|after) (midnight|noon|midday)\b", re.I)


def _clock(m: re.Match) -> str:
    hour, minute = int(m[1]), m[2] or "00"
    if hour > 12 or int(minute) > 59:
        return m[0]  # "14 pm" is not a time anyone means; leave it to the model
    part = (m[4] or "").lower().split()[-1:]  # "morning" of "every morning"
    night = part in (["night"], ["tonight"])
    afternoon = (m[3] or "").lower().startswith("p") or night or part in (["afternoon"], ["evening"])
    hour = hour % 12 + (12 if afternoon else 0)
    if night and m[1] == "12":
        hour = 0  # "12 at night" is midnight
    every = f" {m[4]}" if (m[4] or "").lower().startswith(("every", "each")) else ""  # a daily time stays daily
    return f"{hour:02d}:{minute}{every}"


def _hours(said: str) -> float:
    return 1 if said.lower() in ("a", "an") else float(said)


def normalise(text: str) -> str:
    """``text`` with its spelled numbers as digits and fractions of hours as minutes (module docstring)."""
    text = _digits(text)
    text = _SCALE_POINT.sub(_heard_digit, text)
    for pattern, replace in _DIGIT_COMPOUNDS + _DURATIONS + _SHARES:
        text = pattern.sub(replace, text)  # type: ignore[arg-type]
    text = _CLOCK_POINT.sub(_heard_digit, text)
    text = _CLOCK.sub(_clock, text)
    return _NAMED_TIME.sub(lambda m: f"{m[1]} {'00:00' if m[2].lower() == 'midnight' else '12:00'}", text)
