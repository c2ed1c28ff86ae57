"""Text <-> token ids with the bundle's ``tokenizer.json``, and UTF-8 safe streaming decode."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer as _HFTokenizer
from tokenizers.decoders import DecodeStream


class Tokenizer:
    """A thin wrapper over :class:`tokenizers.Tokenizer`.

    Special tokens are never added implicitly: chat templates spell them out, and the
    GGUF-derived tokenizers would otherwise prepend a stray ``<|im_start|>``.
    """

    def __init__(self, path: str | Path):
        self._tok = _HFTokenizer.from_file(str(path))

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
