"""Reading JSON that users hand edge (manifests, command sets, request bodies) in bounded time and memory.

``json.loads`` alone recurses once per nesting level (a 100k-deep ``[[[...]]]`` raises
RecursionError), accepts escaped lone surrogates (``"\\ud800"``) that crash the first UTF-8
encode later, and reads a file of any size. :func:`load_json` refuses all three with one
:class:`JsonInputError`, which each caller turns into its own error (a ``BundleError`` naming the
manifest, a ``CommandSetError``, an HTTP 400).
"""

from __future__ import annotations

import json
import os
import re
from itertools import accumulate
from typing import Any

MAX_DEPTH = 64  # manifests and command sets nest 4 levels, chat requests 5
MAX_JSON_BYTES = 16 << 20  # far beyond any manifest or command set

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NESTING = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class JsonInputError(ValueError):
    """JSON that cannot be used: not UTF-8, malformed, nested too deeply, too large, or with a lone surrogate."""


def nesting_depth(text: str) -> int:
    """How deeply arrays and objects nest in JSON ``text``, counted without recursion (brackets inside strings
    do not count)."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_NESTING.__getitem__, map(ord, brackets))), default=0)


def load_json(data: bytes | str, *, max_depth: int = MAX_DEPTH, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Parse JSON ``data`` (UTF-8 bytes or text), refusing what would crash or exhaust the reader.

    Raises :class:`JsonInputError` with a one-line reason (the caller adds the file and the fix).
    """
    if len(data) > max_bytes:
        raise JsonInputError(f"{len(data)} bytes, over the limit of {max_bytes}")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        text.encode("utf-8")  # text given as str may hold surrogates (surrogateescape'd bytes)
    except UnicodeError as e:
        raise JsonInputError(f"not UTF-8 text ({e})") from None
    try:  # parsed first: on text that is valid JSON, the depth scan's string pattern runs in linear time
        value = json.loads(text)
    except RecursionError:
        raise JsonInputError(f"nested more than {max_depth} levels deep") from None
    except ValueError as e:  # JSONDecodeError, and integers past Python's 4300-digit limit
        raise JsonInputError(str(e)) from None
    depth = nesting_depth(text)
    if depth > max_depth:
        raise JsonInputError(f"nested {depth} levels deep, more than the {max_depth} allowed")
    if _SURROGATE_ESCAPE.search(text):
        try:  # paired escapes decode to one character; only a lone half fails to encode
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise JsonInputError("a string holds a lone UTF-16 surrogate escape (\\ud800-\\udfff)") from None
    return value


def read_json_file(path: str | os.PathLike, *, max_bytes: int = MAX_JSON_BYTES) -> tuple[Any, bytes]:
    """Read and parse a JSON file of at most ``max_bytes`` (a FIFO or /dev/zero cannot fill memory).

    Returns the value and the bytes it was parsed from (to checksum). ``OSError`` passes through, so the
    caller can say "no such file"; everything else wrong is a :class:`JsonInputError`.
    """
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    return load_json(data, max_bytes=max_bytes), data
