"""Text <-> token ids with the bundle's ``tokenizer.json``, and UTF-8 safe streaming decode.

A BPE ``tokenizer.json`` written by ``tokenizers`` 0.20+ lists its merges as pairs
(``["Ġ", "t"]``); the library parses that form through a slow path that holds the whole file
twice. The older form, one ``"Ġ t"`` string per merge, is the same tokenizer when no piece holds a
space, and loads in half the time and half the memory (SmolLM2: 42 -> 22 MB peak, measured by
``python -m benchmarks startup``). :meth:`Tokenizer.from_bundle` writes that form once per
machine into the user cache, named by the bundle file's checksum and its own, and loads it when
its bytes still hash to that name; anything else falls back to the bundle's file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import Tokenizer as _HFTokenizer
from tokenizers.decoders import DecodeStream

from edge.files import atomic_write_bytes, sha256_file

if TYPE_CHECKING:
    from edge.bundle import Bundle

# encoded by both forms before the compact one is kept: words, digits, spaces, punctuation, accents, CJK, emoji
_CHECK_TEXT = "Hello, world! The oven's at 180 °C;  tabs\tand\nnewlines — café, naïve, 東京, 🙂 <|im_start|>x"


def compact_json(text: str) -> str | None:
    """``tokenizer.json`` text with its BPE merges as ``"a b"`` strings, or None when that form cannot hold them."""
    data = json.loads(text)
    model = data.get("model") or {}
    merges = model.get("merges")
    if model.get("type") != "BPE" or not isinstance(merges, list) or not merges:
        return None
    pair = lambda m: isinstance(m, list) and len(m) == 2 and all(isinstance(p, str) and " " not in p for p in m)  # noqa: E731
    if not all(pair(m) for m in merges):
        return None  # already strings, or a piece with a space that "a b" would split wrongly
    model["merges"] = [f"{a} {b}" for a, b in merges]
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _same(a: _HFTokenizer, b: _HFTokenizer) -> bool:
    ids = a.encode(_CHECK_TEXT, add_special_tokens=False).ids
    return (
        a.get_vocab(with_added_tokens=True) == b.get_vocab(with_added_tokens=True)
        and ids == b.encode(_CHECK_TEXT, add_special_tokens=False).ids
        and a.decode(ids) == b.decode(ids)
    )


def compact_path(path: Path, sha256: str, cache: Path) -> Path | None:
    """The compact copy of ``path`` (whose checksum is ``sha256``) in ``cache``, written on first use.

    Returns None when the tokenizer has no compact form or the cache cannot be written. A copy
    whose bytes no longer hash to its name (corrupted, edited) is deleted and written again.
    """
    for found in sorted(cache.glob(f"{sha256}.*.json")):
        if sha256_file(found) == found.name.split(".")[1]:
            return found
        found.unlink(missing_ok=True)
    if (cache / f"{sha256}.none").exists():
        return None
    text = compact_json(path.read_text(encoding="utf-8"))
    try:
        cache.mkdir(parents=True, exist_ok=True)
        if text is None or not _same(_HFTokenizer.from_file(str(path)), _HFTokenizer.from_str(text)):
            (cache / f"{sha256}.none").touch()
            return None
        data = text.encode("utf-8")
        out = cache / f"{sha256}.{hashlib.sha256(data).hexdigest()}.json"
        atomic_write_bytes(out, data)
    except OSError:
        return None  # a read-only home only costs the slower load
    return out


class Tokenizer:
    """A thin wrapper over :class:`tokenizers.Tokenizer`.

    Special tokens are never added implicitly: chat templates spell them out, and the
    GGUF-derived tokenizers would otherwise prepend a stray ``<|im_start|>``.
    """

    def __init__(self, path: str | Path):
        self._tok = _HFTokenizer.from_file(str(path))

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> Tokenizer:
        """The bundle's tokenizer, read from its compact copy in the user cache when it has one."""
        from edge.bundle import TOKENIZER_FILE
        from edge.paths import cache_dir

        entry = bundle.manifest.files[TOKENIZER_FILE]  # open_bundle checked the file against it
        compact = compact_path(bundle.tokenizer_path, entry.sha256, cache_dir() / "tokenizers")
        return cls(compact or bundle.tokenizer_path)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def stream_decoder(self) -> StreamDecoder:
        return StreamDecoder(self._tok)


class StreamDecoder:
    """Turns ids into text one at a time, holding back bytes until they form whole characters."""

    def __init__(self, tok: _HFTokenizer):
        self._tok = tok
        self._stream = DecodeStream(skip_special_tokens=True)

    def step(self, token_id: int) -> str:
        """The text this token completes; empty while a multi-byte character is unfinished."""
        return self._stream.step(self._tok, token_id) or ""
