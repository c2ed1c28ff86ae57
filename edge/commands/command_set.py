"""Command sets: the JSON file that says which structured commands a device accepts.

A command set names its commands, describes each, and types each argument::

    {"name": "appliance-panel", "description": "...",
     "commands": {"set_light": {"description": "Switch the lights in one room on or off.",
                                "args": {"room": {"enum": ["kitchen", "hallway"]}, "on": {"type": "boolean"}}},
                  "unknown": {"description": "The request is not one of the commands above.", "args": {}}}}

Argument types: ``enum`` (a list of strings or numbers), ``integer`` and ``number`` (optional
``minimum``/``maximum``), ``boolean``, and ``string`` (``maxLength``, 64 if not given). A command
is ``{"command": NAME, "args": {...}}`` with exactly its arguments, each in range. The set's
``unknown`` command, when present, is how a request outside the set is declined.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.errors import EdgeError
from edge.jsonio import JsonInputError, read_json_file

TYPES = ("integer", "number", "boolean", "string")
DEFAULT_MAX_LENGTH = 64
UNKNOWN = "unknown"
# Every command is listed in the model's prompt, so a set past these would not fit a small model's context.
MAX_COMMANDS = 256
MAX_ARGS = 32
MAX_ENUM = 1024
MAX_NAME = 64  # characters of a command or argument name
MAX_TEXT = 2000  # characters of a description or an enum value
MAX_STRING_LENGTH = 4096  # an argument's maxLength: a command is at most a few dozen tokens


class CommandSetError(EdgeError):
    """A command-set file that cannot be used: names the field and what is wrong."""


class InvalidCommand(EdgeError):
    """A command object that does not validate against its command set."""


@dataclass
class Arg:
    """One typed argument of a command."""

    name: str
    type: str  # "enum", "integer", "number", "boolean" or "string"
    enum: list[Any] = field(default_factory=list)
    minimum: float | None = None
    maximum: float | None = None
    max_length: int = DEFAULT_MAX_LENGTH

    def in_range(self, value: float) -> bool:
        """Whether a number is within ``minimum`` and ``maximum`` (either may be absent)."""
        return (self.minimum is None or value >= self.minimum) and (self.maximum is None or value <= self.maximum)

    def schema(self) -> dict[str, Any]:
        """This argument as JSON Schema."""
        if self.type == "enum":
            return {"enum": list(self.enum)}
        s: dict[str, Any] = {"type": self.type}
        if self.minimum is not None:
            s["minimum"] = self.minimum
        if self.maximum is not None:
            s["maximum"] = self.maximum
        if self.type == "string":
            s["maxLength"] = self.max_length
        return s

    def describe(self) -> str:
        """A short human (and model) readable type: ``integer 30-300``, ``one of bake, grill``."""
        if self.type == "enum":
            return "one of " + ", ".join(json.dumps(v) for v in self.enum)
        if self.type in ("integer", "number") and (self.minimum is not None or self.maximum is not None):
            if self.maximum is None:
                return f"{self.type} at least {_num(self.minimum)}"
            if self.minimum is None:
                return f"{self.type} at most {_num(self.maximum)}"
            return f"{self.type} {_num(self.minimum)}-{_num(self.maximum)}"
        if self.type == "string":
            return f"text, at most {self.max_length} characters"
        return self.type

    def sample(self) -> Any:
        """A representative valid value, for examples."""
        if self.type == "enum":
            return self.enum[0]
        if self.type == "boolean":
            return True
        if self.type == "string":
            return "note"
        # one bound alone: a value 5 inside it (a maximum of -1 makes 0 invalid)
        low = self.minimum if self.minimum is not None else 0 if self.maximum is None else min(0, self.maximum - 10)
        high = self.maximum if self.maximum is not None else low + 10
        mid = low + (high - low) / 2
        return int(mid) if self.type == "integer" else mid

    def check(self, value: Any, where: str) -> None:
        """Raise :class:`InvalidCommand` unless ``value`` is a valid value of this argument."""
        ok = True
        if self.type == "enum":
            ok = any(value == v and type(value) is type(v) for v in self.enum)
        elif self.type == "boolean":
            ok = isinstance(value, bool)
        elif self.type == "integer":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif self.type == "number":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif self.type == "string":
            ok = isinstance(value, str) and len(value) <= self.max_length
        if ok and self.type in ("integer", "number"):
            ok = self.in_range(value)
        if not ok:
            raise InvalidCommand(f"{where}: {json.dumps(value)} is not {self.describe()}")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass
class Command:
    name: str
    description: str
    args: list[Arg]

    def signature(self) -> str:
        """``set_light(room: one of "kitchen", ...; on: boolean)``: how the prompt lists the command."""
        return f"{self.name}(" + "; ".join(f"{a.name}: {a.describe()}" for a in self.args) + ")"


@dataclass
class CommandSet:
    """A parsed, checked command set."""

    name: str
    description: str
    commands: dict[str, Command]
    path: str | None = None
    sha256: str | None = None  # of the file it was read from: ties a specialised bundle to its set

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> CommandSet:
        """Read and check a command-set JSON file."""
        p = Path(path).expanduser()
        try:
            raw, data = read_json_file(p)
        except FileNotFoundError:
            raise CommandSetError(
                f"{p}: no such command-set file", "pass the path of a command-set JSON file"
            ) from None
        except (OSError, JsonInputError) as e:
            raise CommandSetError(f"{p}: not readable JSON ({e})", "fix the JSON syntax at that position") from None
        cs = cls.from_dict(raw, where=str(p))
        cs.path = str(p)
        cs.sha256 = hashlib.sha256(data).hexdigest()
        return cs

    @classmethod
    def from_dict(cls, raw: Any, where: str = "command set") -> CommandSet:
        """Check a parsed command set; errors name the field (``commands.set_light.args.room``)."""
        if not isinstance(raw, dict):
            raise _bad(where, "", "must be a JSON object")
        commands = raw.get("commands")
        if not isinstance(commands, dict) or not 0 < len(commands) <= MAX_COMMANDS:
            raise _bad(
                where, "commands", f"must be an object mapping 1 to {MAX_COMMANDS} command names to their definitions"
            )
        parsed = {}
        for name, spec in commands.items():
            at = f"commands.{name}"
            _check_name(where, at, name, "command")
            if not isinstance(spec, dict):
                raise _bad(where, at, "must be an object with a description and args")
            description = _text(where, f"{at}.description", spec.get("description", ""))
            args = spec.get("args", {})
            if not isinstance(args, dict) or len(args) > MAX_ARGS:
                raise _bad(where, f"{at}.args", f"must be an object mapping at most {MAX_ARGS} argument names to types")
            parsed[name] = Command(name, description, [_arg(where, f"{at}.args.{a}", a, s) for a, s in args.items()])
        return cls(
            _text(where, "name", raw.get("name", "")), _text(where, "description", raw.get("description", "")), parsed
        )

    @property
    def unknown(self) -> str | None:
        """The command that declines out-of-domain requests, if the set has one."""
        return UNKNOWN if UNKNOWN in self.commands else None

    def json_schema(
        self, allowed: Mapping[tuple[str, str], Sequence[Any]] | None = None, only: Collection[str] | None = None
    ) -> dict[str, Any]:
        """JSON Schema of one command object: any of the commands, each with exactly its arguments.

        ``allowed`` narrows arguments to listed values: (command, argument) -> values, and ``only`` the
        commands to those named (see ``values.py``).
        """
        allowed = allowed or {}
        options = []
        for c in self.commands.values():
            if only is not None and c.name not in only:
                continue
            args = {
                "type": "object",
                "properties": {
                    a.name: {"enum": list(allowed[c.name, a.name])} if (c.name, a.name) in allowed else a.schema()
                    for a in c.args
                },
                "required": [a.name for a in c.args],
                "additionalProperties": False,
            }
            options.append(
                {
                    "type": "object",
                    "properties": {"command": {"const": c.name}, "args": args},
                    "required": ["command", "args"],
                    "additionalProperties": False,
                }
            )
        return {"anyOf": options}

    def validate(self, obj: Any) -> dict[str, Any]:
        """Return ``obj`` if it is a valid command of this set, else raise :class:`InvalidCommand`."""
        if not isinstance(obj, dict) or set(obj) != {"command", "args"}:
            raise InvalidCommand(f'expected {{"command": NAME, "args": {{...}}}}, got {json.dumps(obj)[:200]}')
        command = self.commands.get(obj["command"]) if isinstance(obj["command"], str) else None
        if command is None:
            raise InvalidCommand(f"unknown command {json.dumps(obj['command'])[:100]}")
        args = obj["args"]
        if not isinstance(args, dict) or set(args) != {a.name for a in command.args}:
            expected = ", ".join(a.name for a in command.args) or "no arguments"
            raise InvalidCommand(f"{command.name} takes {expected}, got {json.dumps(args)[:200]}")
        for a in command.args:
            a.check(args[a.name], f"{command.name}.{a.name}")
        return obj


def _bad(where: str, field_path: str, what: str) -> CommandSetError:
    at = f" field {field_path!r}" if field_path else ""
    return CommandSetError(f"{where}:{at} {what}", "see the command-set format in README.md (Voice commands)")


def _check_name(where: str, at: str, name: str, kind: str) -> None:
    if not name.isidentifier() or len(name) > MAX_NAME:
        raise _bad(where, at, f"{kind} names must be identifiers (letters, digits, _) of at most {MAX_NAME} characters")


def _text(where: str, at: str, value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise _bad(where, at, f"must be a string of at most {MAX_TEXT} characters")
    return value


def _finite(value: Any) -> bool:
    """A JSON number edge can compare and print: not a bool, not NaN or Infinity (Python's json accepts both)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _arg(where: str, at: str, name: str, spec: Any) -> Arg:
    _check_name(where, at, name, "argument")
    if not isinstance(spec, dict):
        raise _bad(where, at, 'must be an object such as {"type": "integer"} or {"enum": [...]}')
    if "enum" in spec:
        values = spec["enum"]
        if not isinstance(values, list) or not 0 < len(values) <= MAX_ENUM:
            raise _bad(where, f"{at}.enum", f"must be a list of 1 to {MAX_ENUM} values")
        if not all(_finite(v) or (isinstance(v, str) and len(v) <= MAX_TEXT) for v in values):
            raise _bad(where, f"{at}.enum", f"values must be numbers or strings of at most {MAX_TEXT} characters")
        return Arg(name, "enum", enum=values)
    kind = spec.get("type")
    if kind not in TYPES:
        raise _bad(where, f"{at}.type", f"must be one of {', '.join(TYPES)} (or give an enum), got {kind!r}")
    arg = Arg(name, kind)
    for key in ("minimum", "maximum"):
        if key in spec:
            if kind not in ("integer", "number"):
                raise _bad(where, f"{at}.{key}", f"only integer and number arguments take a {key}")
            value = spec[key]
            if not _finite(value):
                raise _bad(where, f"{at}.{key}", "must be a finite number")
            setattr(arg, key, value)
    if arg.minimum is not None and arg.maximum is not None:
        if arg.minimum > arg.maximum:
            raise _bad(where, at, f"minimum {arg.minimum} is above maximum {arg.maximum}")
        if kind == "integer" and math.ceil(arg.minimum) > math.floor(arg.maximum):
            raise _bad(where, at, f"no integer lies between minimum {arg.minimum} and maximum {arg.maximum}")
    if "maxLength" in spec:
        value = spec["maxLength"]
        if (
            kind != "string"
            or not isinstance(value, int)
            or isinstance(value, bool)
            or not 0 < value <= MAX_STRING_LENGTH
        ):
            raise _bad(
                where,
                f"{at}.maxLength",
                f"only string arguments take a maxLength, an integer from 1 to {MAX_STRING_LENGTH}",
            )
        arg.max_length = value
    return arg
