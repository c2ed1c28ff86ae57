"""The decode loop: prefill, step, sample, stop. It yields token ids as they are chosen."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edge.text.decoder import OnnxDecoder
from edge.text.sampling import Sampler

if TYPE_CHECKING:
    from edge.commands.grammar import Matcher


@dataclass
class GenerationStats:
    """Filled in while a generation runs; complete once its iterator is exhausted."""

    prompt_tokens: int = 0
    new_tokens: int = 0
    decode_steps: int = 0
    reused_tokens: int = 0
    ttft_s: float = 0.0
    decode_s: float = 0.0
    finish_reason: str = ""  # "stop", "length" or "context"

    @property
    def decode_tokens_per_s(self) -> float:
        # the first new token comes from the prefill; decode speed counts the single-token steps
        return self.decode_steps / self.decode_s if self.decode_s > 0 else 0.0


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def prefill(decoder: OnnxDecoder, prompt: list[int], stats: GenerationStats) -> np.ndarray:
    """Run ``prompt`` through the decoder, reusing keys and values cached for a prefix of it."""
    reuse = min(common_prefix(decoder.tokens, prompt), len(prompt) - 1)
    decoder.rewind(reuse)
    stats.reused_tokens = reuse
    return decoder.forward(prompt[reuse:])


def generate(
    decoder: OnnxDecoder,
    prompt: list[int],
    sampler: Sampler,
    max_new_tokens: int,
    stop_ids: set[int],
    context_length: int,
    stats: GenerationStats | None = None,
) -> Iterator[int]:
    """Yield up to ``max_new_tokens`` ids continuing ``prompt``; stop tokens are not yielded.

    Keys and values already cached for a prefix of ``prompt`` are reused, so a chat only
    prefills its newest turn.
    """
    stats = stats if stats is not None else GenerationStats()
    stats.prompt_tokens = len(prompt)
    start = time.perf_counter()
    logits = prefill(decoder, prompt, stats)
    seen = set(prompt)
    stats.finish_reason = "length"
    for i in range(max_new_tokens):
        token = sampler(logits, seen)
        if i == 0:
            stats.ttft_s = time.perf_counter() - start
            first = time.perf_counter()
        if token in stop_ids:
            stats.finish_reason = "stop"
            break
        stats.new_tokens += 1
        yield token
        if i == max_new_tokens - 1:
            break
        if len(decoder.tokens) >= context_length:
            stats.finish_reason = "context"
            break
        seen.add(token)
        logits = decoder.forward([token])
        stats.decode_steps += 1
        stats.decode_s = time.perf_counter() - first


def generate_constrained(
    decoder: OnnxDecoder, prompt: list[int], matcher: Matcher, max_new_tokens: int, stats: GenerationStats
) -> list[int]:
    """Greedy decoding inside a grammar. Only real choices cost a model call: the tokens the grammar
    forces after each choice (``"args": {"room": "``, closing braces) go into the same call."""
    out = matcher.forced()
    matcher.consume(out)
    stats.prompt_tokens = len(prompt)
    logits = prefill(decoder, prompt + out, stats)
    while not matcher.done and len(out) < max_new_tokens:
        step = [int(np.argmax(np.where(matcher.allowed(), logits, -np.inf)))]
        matcher.consume(step)
        if not matcher.done:
            forced = matcher.forced()
            matcher.consume(forced)
            step += forced
        out += step
        stats.decode_steps += 1
        if not matcher.done:
            logits = decoder.forward(step)
    stats.new_tokens = len(out)
    stats.finish_reason = "stop" if matcher.done else "length"
    return out
