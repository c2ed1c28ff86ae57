"""Choosing the next token from logits: greedy, temperature, top-k, top-p, repetition penalty."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass
class SamplingOptions:
    """How to pick tokens. ``temperature=0`` is greedy; a fixed ``seed`` repeats its output."""

    temperature: float = 0.7
    top_k: int = 40
    top_p: float = 0.9
    repetition_penalty: float = 1.0
    seed: int | None = None

    def validate(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 disables it), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")


class Sampler:
    """Stateful sampler: owns the random generator so a seed fixes the whole sequence."""

    def __init__(self, options: SamplingOptions):
        options.validate()
        self.options = options
        self.rng = np.random.default_rng(options.seed)

    def __call__(self, logits: np.ndarray, seen: Iterable[int] = ()) -> int:
        o = self.options
        logits = logits.astype(np.float32, copy=True)
        if o.repetition_penalty != 1.0:
            idx = np.fromiter(set(seen), dtype=np.int64)
            if idx.size:
                picked = logits[idx]
                logits[idx] = np.where(picked > 0, picked / o.repetition_penalty, picked * o.repetition_penalty)
        if o.temperature == 0:
            return int(np.argmax(logits))
        logits /= o.temperature
        if 0 < o.top_k < logits.size:
            kth = np.partition(logits, -o.top_k)[-o.top_k]
            logits[logits < kth] = -np.inf
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        if o.top_p < 1.0:
            order = np.argsort(-probs)
            cumulative = np.cumsum(probs[order])
            # keep the smallest prefix whose mass reaches top_p (always at least one token)
            cut = int(np.searchsorted(cumulative, o.top_p)) + 1
            keep = order[:cut]
            mask = np.zeros_like(probs)
            mask[keep] = probs[keep]
            probs = mask / mask.sum()
        return int(self.rng.choice(probs.size, p=probs))
