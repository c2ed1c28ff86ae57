"""Constrained decoding: a token mask per step that only lets valid JSON for a schema through.

Built on llguidance (Rust core, no Python dependencies, wheels for x86-64 and aarch64; also the
engine behind llama.cpp's and onnxruntime-genai's structured output), so edge does not carry a
hand-written JSON state machine. The mask is a bitmap over the vocabulary computed in Rust; tokens
the grammar forces (``{"command": "``, argument names, closing braces) are taken without
asking the model, which is most of a command's tokens.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import EdgeError

# Compact JSON with the separators json.dumps uses: one spelling per object, so more tokens are forced.
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class GrammarError(EdgeError):
    """A schema llguidance cannot compile, or a decode that left the grammar."""


def _byte_level_view(path: Path) -> str:
    """The tokenizer JSON as llguidance should read it.

    GGUF-converted byte-level BPE tokenizers (SmolLM2's) carry a decoder sequence of
    ByteFallback, Fuse, Replace("\u2581", " ") and ByteLevel. On a byte-level vocabulary the first
    three never apply, but llguidance only recognises a plain ByteLevel decoder and would read
    "\u0120" as a letter instead of a space. Hand it the equivalent plain decoder.
    """
    tok = json.loads(path.read_text(encoding="utf-8"))
    decoder = tok.get("decoder") or {}
    pre = tok.get("pre_tokenizer") or {}
    if decoder.get("type") == "Sequence" and pre.get("type") == "ByteLevel":
        byte_level = [d for d in decoder.get("decoders", []) if d.get("type") == "ByteLevel"]
        if byte_level:
            tok["decoder"] = byte_level[0]
    return json.dumps(tok)


class Grammar:
    """A JSON schema compiled for one tokenizer; :meth:`matcher` starts a fresh parse."""

    def __init__(self, tokenizer_json: str | Path, schema: dict[str, Any], stop_ids: list[int], vocab_size: int):
        import llguidance

        self._llg = llguidance
        self.tokenizer = llguidance.LLTokenizer(
            _byte_level_view(Path(tokenizer_json)), n_vocab=vocab_size, eos_token=stop_ids[0]
        )
        self.vocab_size = vocab_size
        self.grammar = self._compile(schema)

    def _compile(self, schema: dict[str, Any]) -> str:
        grammar = self._llg.LLMatcher.grammar_from_json_schema(json.dumps(schema), overrides=JSON_OPTIONS)
        error = self._llg.LLMatcher.validate_grammar(grammar, self.tokenizer)
        if error:
            raise GrammarError(f"the command schema does not compile: {error}", "simplify the command set")
        return grammar

    def narrowed(self, schema: dict[str, Any]) -> Grammar:
        """The same tokenizer with another schema (one request's narrower one): the tokenizer is the costly part."""
        other = copy.copy(self)
        other.grammar = self._compile(schema)
        return other

    def matcher(self) -> Matcher:
        return Matcher(self)


class Matcher:
    """One parse in progress: which tokens may come next, which are forced, when it is complete."""

    def __init__(self, grammar: Grammar):
        self._m = grammar._llg.LLMatcher(grammar.tokenizer, grammar.grammar, log_level=0)
        self._vocab = grammar.vocab_size
        self._bits = np.zeros((grammar.vocab_size + 31) // 32, np.int32)
        self._eos = list(grammar.tokenizer.eos_tokens)

    def _check(self) -> None:
        if self._m.is_error():
            raise GrammarError(f"constrained decoding failed: {self._m.get_error()}", "this is a bug in edge")

    @property
    def done(self) -> bool:
        """The output is complete: a whole object has been produced (JSON allows nothing after it)."""
        return self._m.is_stopped() or self._m.is_accepting()

    def forced(self) -> list[int]:
        """Tokens the grammar allows no alternative to, from here."""
        tokens = self._m.compute_ff_tokens()
        self._check()
        return tokens

    def allowed(self) -> np.ndarray:
        """Boolean mask over the vocabulary of the tokens that may come next (end of sequence excluded)."""
        self._m.unsafe_compute_mask_ptr(self._bits.ctypes.data, self._bits.nbytes)
        self._check()
        mask = np.unpackbits(self._bits.view(np.uint8), bitorder="little")[: self._vocab].astype(bool)
        mask[self._eos] = False
        return mask

    def consume(self, tokens: list[int]) -> None:
        self._m.consume_tokens(tokens)
        self._check()
