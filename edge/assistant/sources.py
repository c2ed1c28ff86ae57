"""Where the assistant's audio comes from: a recording (as fast as the CPU allows) or the live microphone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edge.speech.audio import load_audio
from edge.speech.vad import CHUNK_SAMPLES


def file_blocks(path: str | Path, block_samples: int = CHUNK_SAMPLES) -> Iterator[np.ndarray]:
    """A WAV file (any rate and channels, up to edge's one-hour read limit) as float32 16 kHz blocks."""
    audio = load_audio(path)
    for start in range(0, len(audio), block_samples):
        yield audio[start : start + block_samples]


def microphone_blocks(device: int | str | None = None, max_seconds: float | None = None) -> Iterator[np.ndarray]:
    """Live float32 16 kHz blocks from an input device; ``max_seconds`` stops after that much audio."""
    from edge.speech.microphone import open_microphone

    remaining = None if max_seconds is None else int(max_seconds * 16000)
    with open_microphone(device) as mic:
        for block in mic:
            if remaining is not None:
                block = block[:remaining]
                remaining -= len(block)
            yield block
            if remaining == 0:
                return
