"""Requests to commands: a text model, a prompt built from the command set, and constrained decoding.

>>> import edge
>>> from edge.commands.command_set import CommandSet
>>> panel = edge.CommandModel(edge.load(), CommandSet.from_file("appliance-panel.json"))
>>> panel.parse("it's too dark in the kitchen").command
{'command': 'set_light', 'args': {'room': 'kitchen', 'on': True}}

Every result validates against the command set: the grammar admits nothing else, and the
object is validated again before it is returned.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from edge.bundle import MANIFEST
from edge.commands.command_set import CommandSet, CommandSetError
from edge.commands.grammar import Grammar
from edge.commands.numbers import normalise
from edge.commands.values import allowed_values, commands_meant, stated_values
from edge.errors import BundleError, ContextOverflowError
from edge.files import sha256_file
from edge.text.generate import GenerationStats, generate_constrained
from edge.text.model import TextModel

MAX_COMMAND_TOKENS = 96
NARROWED_GRAMMARS = 64  # compiled per-request grammars kept: a repeated request skips the compile
OUT_OF_DOMAIN = "what is the capital of france"
TYPED_CAPITALS = re.compile(r"I(?:'[a-z]+)?")  # "I", "I'm", "I'd": capitals people type too
SENTENCE_END = re.compile(r"\s*[.!?]+$")
# Whisper ends a sentence where people typing go on with a comma: "The kitchen is smoky. Max the fan."
SENTENCE_BREAK = re.compile(r"(?<=[a-z0-9%'])(?<!\bmr)(?<!\bmrs)(?<!\bms)(?<!\bdr)(?<!\bst)[.!?]+\s+(?=\S)", re.I)


@dataclass
class CommandResult:
    """One request mapped to a command, with what it cost."""

    request: str
    command: dict
    latency_s: float
    stats: GenerationStats = field(repr=False)

    @property
    def json(self) -> str:
        return json.dumps(self.command, ensure_ascii=False)


def system_prompt(commands: CommandSet) -> str:
    """The instructions, from the command set alone: what it controls and each command's signature."""
    lines = [
        f"You control {commands.description.rstrip('.')}." if commands.description else "You control a device.",
        'Answer every request with one JSON object {"command": NAME, "args": {...}} for the command that does it.',
        "Commands:",
    ]
    lines += [f"- {c.signature()}: {c.description}" for c in commands.commands.values()]
    if commands.unknown:
        lines.append(f'If no command fits, answer {{"command": "{commands.unknown}", "args": {{}}}}.')
    return "\n".join(lines)


def specialised_system(commands: CommandSet) -> str:
    """The whole instruction a specialised model was trained with: the set's name (it learned the rest)."""
    return commands.name or "commands"


def _either(values: list[str]) -> str:
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " or " + values[-1]


def speech_prompt(commands: CommandSet) -> str:
    """The set's own words as text for the speech model to read first (Whisper's initial prompt).

    Whisper takes the prompt as what was said just before, and carries on in its style: a list of
    words makes it answer in lists (commas for full stops, words repeated at the end). So the prompt is
    the set's description and each command's description as sentences, each enum argument's values
    spelled out after its command ("Choose the oven's cooking mode: bake, grill, fan or defrost.").
    """

    def sentence(text: str) -> str:
        text = " ".join(text.split()).rstrip(" .")
        return text[:1].upper() + text[1:] if text else ""

    parts = [sentence(commands.description)]
    for c in commands.commands.values():
        if c.name == commands.unknown:
            continue
        line = sentence(c.description) or sentence(c.name.replace("_", " "))
        values = [_either([str(v).replace("_", " ") for v in a.enum]) for a in c.args if a.enum]
        parts.append(line + (": " + "; ".join(values) if values else ""))
    return " ".join(f"{p}." for p in parts if p)


def request_text(request: str) -> str:
    """A request as the model reads it, in training and at run time alike: one line, numbers as digits,
    in the style people type, not the one Whisper writes: "It's too dark. Lights on." reads as
    "it's too dark, lights on" (lower case but for "I", a comma between sentences, no full stop at the end)."""
    text = SENTENCE_BREAK.sub(", ", normalise(" ".join(request.split())))
    words = [w if TYPED_CAPITALS.fullmatch(w) else w.lower() for w in text.split()]
    return SENTENCE_END.sub("", " ".join(words))


def answer(command: dict) -> str:
    """A command as the model writes it: the compact JSON the grammar spells."""
    return json.dumps(command, ensure_ascii=False)


def is_specialised_for(model: TextModel, commands: CommandSet) -> bool:
    """Whether ``model``'s bundle was fine-tuned on exactly this command-set file."""
    info = model.manifest.commands
    return info is not None and commands.sha256 == info.sha256


def paired_speech_model(bundle) -> tuple[Path | None, str | None]:
    """The speech bundle a specialised text bundle was trained on the transcripts of, if it is still there.

    Returns (its folder, None), or (None, why not) when one is recorded but missing or changed since,
    or (None, None) when the bundle was trained on clean text only.
    """
    info = bundle.manifest.commands
    recorded = (info.training.get("speech_model") if info else None) or {}
    if not isinstance(recorded, dict) or not recorded.get("path"):
        return None, None
    folder = Path(str(recorded["path"]))
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return None, f"the speech model it was trained with ({folder}) is not there"
    if sha256_file(manifest) != recorded.get("manifest_sha256"):
        return None, f"the speech model it was trained with ({folder}) has changed since"
    return folder, None


def examples(commands: CommandSet) -> list[tuple[str, dict]]:
    """One worked example per command, made from the set alone: its description with sample values."""
    shots = []
    for c in commands.commands.values():
        if c.name == commands.unknown:
            # declining is shown on a request no appliance serves, not on the set's own wording
            shots.append((OUT_OF_DOMAIN, {"command": c.name, "args": {}}))
            continue
        args = {a.name: a.sample() for a in c.args}
        values = ", ".join(f"{name} {json.dumps(value)}" for name, value in args.items())
        request = c.description.rstrip(".").lower() + (f": {values}" if values else "")
        shots.append((request, {"command": c.name, "args": args}))
    return shots


class CommandModel:
    """Maps typed (or transcribed) requests to commands of one command set."""

    def __init__(self, model: TextModel, commands: CommandSet, ground_numbers: bool = True):
        m = model.manifest
        self.model = model
        self.commands = commands
        self.grammar = Grammar(model.bundle.tokenizer_path, commands.json_schema(), m.tokens.stop_ids, m.vocab_size)
        # numeric arguments take a number the request states, when one fits (values.py)
        self.ground_numbers = ground_numbers
        self._narrowed: dict[tuple, Grammar] = {}
        if model.manifest.chat_template is None:
            raise BundleError(
                f"{model.bundle.path}: voice commands need an instruction-tuned model with a chat template",
                "use the default bundle (smollm2-135m) or another chat model's bundle",
            )
        self.specialised = is_specialised_for(model, commands)
        # the same for every request: rendered into the prompt before it. A model fine-tuned on
        # this set gets the prompt it was trained with; any other gets instructions and examples.
        self.system = specialised_system(commands) if self.specialised else system_prompt(commands)
        self._instructions = [{"role": "system", "content": self.system}]
        for shot, command in [] if self.specialised else examples(commands):
            self._instructions += [
                {"role": "user", "content": shot},
                {"role": "assistant", "content": answer(command)},
            ]
        try:
            instructions = self._prompt_ids("")
        except ContextOverflowError:
            raise CommandSetError(
                f"the instructions for {len(commands.commands)} commands do not fit the model's context",
                "split the command set, or raise --max-context",
            ) from None
        # a few tokens of slack: the request's tokens may merge differently inside the template
        self._room = max(model.context_length - MAX_COMMAND_TOKENS - len(instructions) - 8, 0)
        # the instructions are the same for every request: prefill them now, so a request only pays for itself
        self.model.decoder.rewind(0)
        self.model.decoder.forward(instructions[:-1])

    def _prompt_ids(self, request: str) -> list[int]:
        messages = [*self._instructions, {"role": "user", "content": request}]
        return self.model.encode_prompt(self.model.manifest.chat_template.render(messages), MAX_COMMAND_TOKENS)

    def _fit(self, request: str) -> str:
        """``request``, cut to what the context holds after the instructions: a command, never an error."""
        ids = self.model.tokenizer.encode(request)
        return request if len(ids) <= self._room else self.model.tokenizer.decode(ids[: self._room])

    def parse(self, request: str) -> CommandResult:
        """The command for ``request``; always a valid command of the set."""
        start = time.perf_counter()
        stats = GenerationStats()
        said = request_text(request)  # one line, however it was typed or transcribed
        request = self._fit(said)
        if self.commands.unknown and not any(ch.isalnum() for ch in request):
            # nothing said (a silent clip, a blank line): no model would read a command into it
            command = {"command": self.commands.unknown, "args": {}}
            return CommandResult(request, command, time.perf_counter() - start, stats)
        ids = self._prompt_ids(request)
        # the numbers come from all that was said, even where the model only sees what its context holds
        matcher = self._grammar_for(said).matcher()
        tokens = generate_constrained(self.model.decoder, ids, matcher, MAX_COMMAND_TOKENS, stats)
        command = self.commands.validate(json.loads(self.model.tokenizer.decode(tokens)))
        return CommandResult(request, command, time.perf_counter() - start, stats)

    def _grammar_for(self, request: str) -> Grammar:
        """The set's grammar narrowed to the commands and numbers ``request`` states (values.py)."""
        if not self.ground_numbers:
            return self.grammar
        stated = stated_values(request)
        allowed = allowed_values(self.commands, stated)
        meant = commands_meant(self.commands, stated, allowed, request)
        if not allowed and meant is None:
            return self.grammar
        key = (tuple(sorted(allowed.items())), tuple(sorted(meant or ())))
        grammar = self._narrowed.get(key)
        if grammar is None:
            if len(self._narrowed) >= NARROWED_GRAMMARS:
                self._narrowed.pop(next(iter(self._narrowed)))
            schema = self.commands.json_schema(allowed, meant)
            grammar = self._narrowed[key] = self.grammar.narrowed(schema)
        return grammar
