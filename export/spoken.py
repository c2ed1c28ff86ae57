"""Requests as a speech model hears them: generated requests spoken by varied voices, then transcribed.

A command model trained only on clean text meets a recogniser's mistakes at run time for the first time
("make it 165 degrees" for "bake it at 165 degrees"). :func:`heard` speaks a sample of the generated
requests with espeak-ng in many voices (accents, voice variants, speeds, pitches, some with noise),
transcribes each clip with the speech bundle the command bundle will be paired with, and returns the
transcripts labelled with the command the request meant, to train on beside the clean text.

The voices are espeak-ng's English accents with its voice variants, never the plain default voice at
the default speed that ``python -m benchmarks commands --audio`` measures with, and never Piper: the
benchmark's voices stay unheard in training.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from .utterances import Example

ACCENTS = ("en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt3")
SPEEDS = (130, 150, 165, 185, 205)  # words a minute; espeak-ng's default is 175
PITCHES = (30, 40, 50, 60, 70)  # 0-99; the default is 50
NOISY_SHARE = 0.5  # clips with white noise added, at a signal-to-noise ratio drawn from NOISE_SNR_DB
NOISE_SNR_DB = (10.0, 30.0)


@dataclass(frozen=True)
class Voice:
    """One espeak-ng voice: accent, variant, speed (wpm) and pitch, and noise (SNR in dB, None: clean)."""

    accent: str
    variant: str
    speed: int
    pitch: int
    snr_db: float | None = None

    @property
    def name(self) -> str:
        noise = f", noise {self.snr_db:.0f} dB" if self.snr_db is not None else ""
        return f"{self.accent}+{self.variant} {self.speed} wpm pitch {self.pitch}{noise}"


def voices(rng: random.Random) -> Iterable[Voice]:
    """An endless stream of voices drawn from ``rng``."""
    while True:
        noisy = rng.random() < NOISY_SHARE
        yield Voice(
            rng.choice(ACCENTS),
            rng.choice(VARIANTS),
            rng.choice(SPEEDS),
            rng.choice(PITCHES),
            round(rng.uniform(*NOISE_SNR_DB), 1) if noisy else None,
        )


def missing_tools() -> str | None:
    """Why requests cannot be spoken here, or None."""
    if shutil.which("espeak-ng") is None:
        return "espeak-ng is not installed (apt-get install espeak-ng)"
    return None


def speak(text: str, voice: Voice, rate: int, rng: random.Random) -> np.ndarray:
    """``text`` spoken by ``voice``: float32 mono at ``rate`` Hz."""
    from edge.speech.audio import SAMPLE_RATE, decode_audio, resample

    cmd = ["espeak-ng", "-v", f"{voice.accent}+{voice.variant}", "-s", str(voice.speed), "-p", str(voice.pitch)]
    wav = subprocess.run([*cmd, "--stdout", text], check=True, capture_output=True).stdout
    audio = decode_audio(wav, f"espeak-ng's speech of {text!r}")  # 16 kHz mono
    audio = resample(audio, SAMPLE_RATE, rate) if rate != SAMPLE_RATE else audio
    if voice.snr_db is not None and audio.size:
        power = float(np.mean(audio**2)) or 1e-8
        noise = np.random.default_rng(rng.getrandbits(32)).standard_normal(audio.size)
        audio = audio + (noise * np.sqrt(power / 10 ** (voice.snr_db / 10))).astype(np.float32)
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def heard(
    examples: list[Example],
    recognizer,
    per_command: int,
    seed: int,
    tick: Callable[[], None] = lambda: None,
) -> list[Example]:
    """Up to ``per_command`` of ``examples`` for each command, spoken and transcribed by ``recognizer``.

    Each returned example is the transcript with the command the request meant. Clips the recogniser
    heard as nothing are dropped. The same seed speaks the same requests with the same voices.
    """
    rng = random.Random(f"heard-{seed}")
    by_command: dict[str, list[Example]] = {}
    for ex in examples:
        by_command.setdefault(ex.command["command"], []).append(ex)
    chosen = [ex for group in by_command.values() for ex in rng.sample(group, min(per_command, len(group)))]
    out = []
    for ex, voice in zip(chosen, voices(rng), strict=False):
        audio = speak(ex.text, voice, recognizer.sample_rate, rng)
        text = recognizer.transcribe(audio).text.strip()
        tick()
        if text:
            out.append(Example(text, ex.command))
    return out
