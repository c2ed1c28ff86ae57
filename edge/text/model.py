"""The text model API: ``edge.load(path)`` returns a :class:`TextModel`."""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from edge.bundle import TEXT_GENERATION, Bundle, open_bundle
from edge.errors import BundleError, ContextOverflowError
from edge.text.decoder import OnnxDecoder
from edge.text.generate import GenerationStats, generate
from edge.text.sampling import Sampler, SamplingOptions
from edge.text.tokenizer import Tokenizer

# The KV cache grows with the conversation; capping the window keeps memory bounded on a Pi.
DEFAULT_MAX_CONTEXT = 2048


@dataclass
class Generation:
    """A finished generation: its text and how it went."""

    text: str
    stats: GenerationStats
    load_s: float = 0.0


def _stop_at(text: str, stops: list[str]) -> int | None:
    hits = [i for s in stops if (i := text.find(s)) >= 0]
    return min(hits) if hits else None


def _held_back(text: str, stops: list[str]) -> int:
    """How many trailing characters could begin a stop string and must wait for more text."""
    longest = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), longest, -1):
            if text.endswith(s[:n]):
                longest = n
                break
    return longest


class TextModel:
    """A text-generation bundle loaded for inference."""

    def __init__(
        self, bundle: Bundle, threads: int | None = None, max_context: int | None = None, provider: str = "cpu"
    ):
        """``provider``: "cpu", or "cuda" for onnxruntime-gpu's CUDA execution provider (a ProviderError
        names what is missing when it cannot run)."""
        m = bundle.manifest
        if m.task != TEXT_GENERATION:
            raise BundleError(
                f"{bundle.path}: a {m.task!r} bundle, not a text-generation one",
                "pass a bundle exported from a language model",
            )
        start = time.perf_counter()
        self.bundle = bundle
        self.manifest = m
        self.tokenizer = Tokenizer.from_bundle(bundle)
        if self.tokenizer.vocab_size > m.vocab_size:
            raise BundleError(
                f"{bundle.tokenizer_path}: tokenizer has {self.tokenizer.vocab_size} tokens, "
                f"the model only {m.vocab_size}",
                "use the tokenizer.json exported with this model",
            )
        self.decoder = OnnxDecoder(
            bundle.model_path, m.kv_cache, threads=threads, prepack=m.precision != "fp32", provider=provider
        )
        self.context_length = min(m.context_length, max_context or DEFAULT_MAX_CONTEXT)
        self.load_s = time.perf_counter() - start

    @property
    def is_chat(self) -> bool:
        return self.manifest.chat_template is not None

    def format_prompt(self, prompt: str, system: str | None = None, raw: bool = False) -> str:
        """Wrap ``prompt`` in the chat template (unless ``raw`` or the model has none)."""
        if raw or self.manifest.chat_template is None:
            return prompt if system is None else f"{system}\n\n{prompt}"
        messages = [{"role": "system", "content": system}] if system is not None else []
        return self.manifest.chat_template.render([*messages, {"role": "user", "content": prompt}])

    def encode_prompt(self, text: str, max_new_tokens: int) -> list[int]:
        """``text``'s token ids as the model reads them (BOS first if it wants one), refused if too long."""
        tokens = self.manifest.tokens
        ids = tokens.with_bos(self.tokenizer.encode(text))  # a chat template may already spell the BOS out
        if not ids and tokens.bos_id is not None:
            ids = [tokens.bos_id]
        if not ids:
            raise ValueError("empty prompt: give some text to continue")
        budget = self.context_length - min(max_new_tokens, self.context_length // 2)
        if len(ids) > budget:
            raise ContextOverflowError(
                f"prompt is {len(ids)} tokens; the {self.context_length}-token context keeps "
                f"{self.context_length - budget} for the reply, leaving {budget} for the prompt",
                "shorten the prompt, lower --max-new-tokens, or raise --max-context",
            )
        return ids

    def stream_ids(
        self,
        ids: list[int],
        *,
        max_new_tokens: int = 256,
        sampling: SamplingOptions | None = None,
        stop: list[str] | None = None,
        stats: GenerationStats | None = None,
        ignore_eos: bool = False,
    ) -> Iterator[str]:
        """Stream text continuing the token ids ``ids``; the lowest-level text API.

        ``ignore_eos`` keeps generating past stop tokens (benchmarks force a fixed length).
        """
        sampler = Sampler(sampling or SamplingOptions())
        stops = [s for s in (stop or []) if s] + self.manifest.tokens.stop_strings
        decoded = self.tokenizer.stream_decoder()
        pending = ""
        stop_ids = set() if ignore_eos else set(self.manifest.tokens.stop_ids)
        for token in generate(self.decoder, ids, sampler, max_new_tokens, stop_ids, self.context_length, stats):
            pending += decoded.step(token)
            if stops:
                cut = _stop_at(pending, stops)
                if cut is not None:
                    if stats is not None:
                        stats.finish_reason = "stop"
                    yield pending[:cut]
                    return
                ready = len(pending) - _held_back(pending, stops)
            else:
                ready = len(pending)
            if ready:
                yield pending[:ready]
                pending = pending[ready:]
        if pending:
            yield pending

    def stream(
        self,
        prompt: str,
        *,
        system: str | None = None,
        raw: bool = False,
        max_new_tokens: int = 256,
        sampling: SamplingOptions | None = None,
        stop: list[str] | None = None,
        stats: GenerationStats | None = None,
    ) -> Iterator[str]:
        """Stream the reply to ``prompt`` piece by piece, as it is generated."""
        ids = self.encode_prompt(self.format_prompt(prompt, system, raw), max_new_tokens)
        yield from self.stream_ids(ids, max_new_tokens=max_new_tokens, sampling=sampling, stop=stop, stats=stats)

    def generate(self, prompt: str, **kwargs) -> Generation:
        """Generate the whole reply to ``prompt``; takes the same options as :meth:`stream`."""
        stats = GenerationStats()
        text = "".join(self.stream(prompt, stats=stats, **kwargs))
        return Generation(text=text, stats=stats, load_s=self.load_s)

    def chat_text(self, messages: list[dict[str, str]]) -> str:
        """A conversation as prompt text: the chat template, or for a base model a transcript it can continue."""
        template = self.manifest.chat_template
        if template is not None:
            return template.render(messages)
        lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
        return "\n".join(lines) + "\nAssistant:"

    def fork(self) -> TextModel:
        """The same model (weights shared, not loaded again) with a KV cache of its own."""
        twin = copy.copy(self)
        twin.decoder = self.decoder.fork()
        return twin

    def chat(self, system: str | None = None) -> ChatSession:
        """Start a conversation that keeps its history (and its KV cache) between turns."""
        return ChatSession(self, system)


@dataclass
class ChatSession:
    """A conversation with history.

    Context policy: when the history plus the reply budget no longer fits the context, the
    oldest user/assistant turns are dropped (the system message is kept) until it does.
    """

    model: TextModel
    system: str | None = None
    messages: list[dict[str, str]] = field(default_factory=list)
    dropped_turns: int = 0

    def _prompt_ids(self, max_new_tokens: int) -> list[int]:
        model = self.model
        while True:
            head = [{"role": "system", "content": self.system}] if self.system is not None else []
            try:
                return model.encode_prompt(model.chat_text(head + self.messages), max_new_tokens)
            except ContextOverflowError:
                if len(self.messages) <= 1:
                    raise
                self.messages = self.messages[2:]  # one user turn and its reply
                self.dropped_turns += 1

    def send(
        self,
        text: str,
        *,
        max_new_tokens: int = 256,
        sampling: SamplingOptions | None = None,
        stop: list[str] | None = None,
        stats: GenerationStats | None = None,
    ) -> Iterator[str]:
        """Stream the reply to ``text``. Stopping early (closing the iterator) keeps what was said."""
        self.messages.append({"role": "user", "content": text})
        try:
            ids = self._prompt_ids(max_new_tokens)
        except BaseException:
            self.messages.pop()
            raise
        reply = []
        try:
            for piece in self.model.stream_ids(
                ids, max_new_tokens=max_new_tokens, sampling=sampling, stop=stop, stats=stats
            ):
                reply.append(piece)
                yield piece
        finally:
            self.messages.append({"role": "assistant", "content": "".join(reply).strip()})


def load(
    path: str | os.PathLike | None = None,
    *,
    threads: int | None = None,
    max_context: int | None = None,
    provider: str = "cpu",
) -> TextModel:
    """Open a bundle (folder or its ``model.onnx``) and load it; ``None`` means the default bundle."""
    if path is None:
        from edge.cache import default_bundle

        path = default_bundle()
    return TextModel(open_bundle(Path(path)), threads=threads, max_context=max_context, provider=provider)
