"""Microphone capture through sounddevice/PortAudio (the optional ``voice`` extra), and ``listen()``: mic -> utterances.

>>> with open_microphone() as mic:          # int16 16 kHz mono, delivered as float32 blocks in [-1, 1]
...     for block in mic: ...
>>> for utterance in listen(vad_path=packaged_vad_path()): print(utterance.start, utterance.end)

How a stream ends: PortAudio's finished callback (the stream stopped or was aborted) ends iteration cleanly; no
audio for ``stall_timeout`` seconds raises MicrophoneError (a device that vanished). A file-backed ALSA device
(``type file`` with ``infile``) never signals the end of its file: it replays stale buffer contents forever, so
``listen(max_seconds=...)`` stops after that much *stream* audio (counted in samples, not wall time, because such
a device delivers faster than real time).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edge.errors import MicrophoneError
from edge.speech.audio import SAMPLE_RATE
from edge.speech.vad import CHUNK_SAMPLES, Utterance, UtteranceSegmenter, VoiceActivityDetector, packaged_vad_path

LIST_HINT = "run `edge-run --list-devices` and pass one of the input devices with `--device N`"


def import_sounddevice():
    # imported here, not at module level: the voice extra is optional and PortAudio may be missing
    try:
        import sounddevice
    except ImportError as e:
        raise MicrophoneError(
            f"Audio capture and playback need the sounddevice package ({e})", "pip install 'edge[voice]'"
        ) from e
    except OSError as e:  # sounddevice raises OSError when the PortAudio shared library is not found
        raise MicrophoneError(
            f"The PortAudio library is missing ({e})",
            "sudo apt-get install libportaudio2 (Debian, Ubuntu, Raspberry Pi OS)",
        ) from e
    return sounddevice


def list_devices() -> str:
    """The input devices, one a line: index, name, host API, channels, and which is the default."""
    sd = import_sounddevice()
    default_input = sd.default.device[0]
    hostapis = sd.query_hostapis()
    lines = []
    for index, info in enumerate(sd.query_devices()):
        if info["max_input_channels"] > 0:
            marker = "*" if index == default_input else " "
            api = hostapis[info["hostapi"]]["name"]
            lines.append(f"{marker} {index:3d}  {info['name']}  ({api}, {info['max_input_channels']} in)")
    if not lines:
        return "No input devices found: is a microphone connected?"
    return "Input devices (* = default):\n" + "\n".join(lines)


def _parse_device(device: int | str | None) -> int | str | None:
    # `--device 3` arrives as a string; sounddevice treats strings as name substrings
    if isinstance(device, str) and device.strip().lstrip("-").isdigit():
        return int(device)
    return device


class Microphone:
    """An open 16 kHz mono input stream. Iterate for float32 blocks; use as a context manager to close it.

    ``overflows`` counts blocks PortAudio flagged as overflowed (audio lost in the driver); ``dropped`` counts
    blocks discarded because the reader fell more than ``max_buffer_s`` behind. Neither is fatal.
    """

    def __init__(
        self,
        device: int | str | None = None,
        block_samples: int = CHUNK_SAMPLES,
        stall_timeout: float = 3.0,
        max_buffer_s: float = 120.0,
    ):
        self.device = _parse_device(device)
        self.block_samples = block_samples
        self.stall_timeout = stall_timeout
        self.overflows = 0
        self.dropped = 0
        self.captured_at = 0.0  # time.monotonic() when the block last yielded was captured
        # unbounded growth would be a slow leak on a Pi; two minutes covers any transcription pause
        capacity = max(1, int(max_buffer_s * SAMPLE_RATE / block_samples))
        self._queue: queue.Queue[tuple[float, bytes] | None] = queue.Queue(capacity)  # (capture time, int16 bytes)
        self._ended = threading.Event()
        self._stream = None
        self.name = ""

    def start(self) -> Microphone:
        """Check the device and start capturing into the queue."""
        sd = import_sounddevice()
        try:
            info = sd.query_devices(self.device, "input")
        except (ValueError, sd.PortAudioError) as e:
            if self.device is None:
                raise MicrophoneError("No default input device: no microphone found", LIST_HINT) from e
            raise MicrophoneError(f"No input device {self.device!r} ({e})", LIST_HINT) from e
        self.name = info["name"]
        try:
            sd.check_input_settings(device=self.device, channels=1, dtype="int16", samplerate=SAMPLE_RATE)
            self._stream = sd.RawInputStream(
                samplerate=SAMPLE_RATE,
                channels=1,
                dtype="int16",
                blocksize=self.block_samples,
                device=self.device,
                callback=self._callback,
                finished_callback=self._finished,
            )
            self._stream.start()
        except (ValueError, sd.PortAudioError) as e:
            self.close()
            raise MicrophoneError(
                f"Cannot record 16 kHz mono from input device {self.name!r} ({e})",
                "check no other program holds the device, or pick another one: "
                + LIST_HINT
                + " (on Linux, the 'default' and 'pulse' devices convert the sample rate)",
            ) from e
        return self

    def _callback(self, indata, frames, time_info, status) -> None:
        # runs on PortAudio's thread: copy the block out and return quickly
        if status.input_overflow:
            self.overflows += 1
        try:
            self._queue.put_nowait((time.monotonic(), bytes(indata)))
        except queue.Full:
            self.dropped += 1

    def _finished(self) -> None:
        self._ended.set()
        with contextlib.suppress(queue.Full):  # a full queue: the reader sees _ended once it has drained it
            self._queue.put_nowait(None)

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            try:
                block = self._queue.get(timeout=self.stall_timeout)
            except queue.Empty:
                if self._ended.is_set() or self._stream is None:
                    return
                raise MicrophoneError(
                    f"The microphone {self.name!r} delivered no audio for {self.stall_timeout:g} s",
                    "check it is still connected; " + LIST_HINT,
                ) from None
            if block is None:
                return
            self.captured_at, data = block
            yield np.frombuffer(data, np.int16).astype(np.float32) / 32768.0

    def close(self) -> None:
        """Stop capturing and release the device."""
        if self._stream is not None:
            self._stream.close(ignore_errors=True)
            self._stream = None

    def __enter__(self) -> Microphone:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_microphone(device: int | str | None = None, block_samples: int = CHUNK_SAMPLES) -> Microphone:
    """Open an input device (index, name substring, or None for the default) as int16 16 kHz mono and start it.

    Returns a started :class:`Microphone`: iterate it for float32 blocks of ``block_samples``; close it with
    ``with`` or ``close()``. Raises MicrophoneError naming the fix when capture is unavailable.
    """
    return Microphone(device, block_samples).start()


def listen(
    device: int | str | None = None,
    vad_path: str | Path | None = None,
    *,
    max_seconds: float | None = None,
    block_samples: int = CHUNK_SAMPLES,
    **segmenter_options,
) -> Iterator[Utterance]:
    """Yield utterances spoken into the microphone: mic blocks -> Silero VAD -> :class:`UtteranceSegmenter`.

    ``vad_path`` defaults to the model in the silero-vad package. The stream ends when the device stops, or after
    ``max_seconds`` of audio; the utterance in progress is then flushed. ``segmenter_options`` go to
    UtteranceSegmenter (threshold, min_speech_ms, min_silence_ms, speech_pad_ms, max_utterance_s). Errors are
    raised on the first ``next()``. Audio keeps being captured while the caller handles an utterance.
    """
    detector = VoiceActivityDetector(vad_path if vad_path is not None else packaged_vad_path())
    segmenter = UtteranceSegmenter(detector, **segmenter_options)
    remaining = None if max_seconds is None else int(max_seconds * SAMPLE_RATE)
    with open_microphone(device, block_samples) as mic:
        for block in mic:
            if remaining is not None:
                block = block[:remaining]
                remaining -= len(block)
            yield from segmenter.feed(block, mic.captured_at)
            if remaining == 0:
                break
    yield from segmenter.flush()
