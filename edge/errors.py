"""Errors the runtime raises on purpose: each names the problem and the fix."""

from __future__ import annotations


class EdgeError(Exception):
    """A failure a user can act on. ``hint`` says what to do about it."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.hint}" if self.hint else self.message


class BundleError(EdgeError):
    """A bundle is missing, incomplete, corrupted or of an unknown format."""


class ContextOverflowError(EdgeError):
    """A prompt does not fit in the model's context window."""


class AudioError(EdgeError):
    """An audio file is missing, not a WAV, or in an encoding the runtime cannot read."""


class VadError(EdgeError):
    """The voice-activity model is missing or is not a Silero VAD model."""


class MicrophoneError(EdgeError):
    """Audio capture is unavailable: no sounddevice/PortAudio, no input device, or the device failed."""
