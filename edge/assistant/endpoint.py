"""When a spoken request has ended: a short silence once what was heard is already a whole command, longer otherwise.

A fixed 0.5 s of silence is most of a voice command's latency. The assistant transcribes and maps the request
after ``short_s`` of silence; if that gives a command of the set whose numbers were all said, it acts at once.
Anything else (a question, a declined request, "set a timer for ...") waits ``long_s``, because people pause
mid-question and mid-number; that speculative result is reused if nothing more is said.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.commands.command_set import CommandSet
from edge.commands.numbers import normalise
from edge.commands.values import numbers_stated

# Words a request does not end on: "set a timer for", "turn on the", "the oven and".
DANGLING = frozenset(["a", "an", "and", "at", "by", "for", "from", "in", "into", "of", "on", "or", "the", "to", "with"])


@dataclass(frozen=True)
class Endpointing:
    """Silence thresholds in seconds. ``short_s == long_s`` is the plain fixed-silence endpoint."""

    short_s: float = 0.2
    long_s: float = 0.7  # above the 0.6 s pauses of the benchmark's split requests ("set a timer for ... 20 minutes")
    no_speech_s: float = 5.0  # after the wake word, give up when nobody speaks this long
    max_request_s: float = 12.0  # a request is cut here even if speech goes on
    min_speech_s: float = 0.2  # shorter voiced stretches (a click, a breath) do not start a request


def is_complete(transcript: str, command: dict, commands: CommandSet) -> bool:
    """Whether ``command``, mapped from ``transcript`` so far, can be acted on without waiting for more speech.

    A declined request is never complete (it may be a question still being asked); nor is a transcript that
    trails off on a joining word or an ellipsis, nor one whose command carries a number that was not said
    (the grammar makes the model supply one: "set a timer for" would otherwise start some timer).
    """
    if command["command"] == commands.unknown:
        return False
    text = transcript.strip()
    if not text or text.endswith(("...", "…", ",", "-")):
        return False
    request = normalise(text)
    words = request.lower().rstrip(".!?").split()
    if not words or words[-1] in DANGLING:
        return False
    return numbers_stated(commands, request, command)
