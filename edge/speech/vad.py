"""Voice activity detection with Silero VAD (v5/v6 ONNX) on plain onnxruntime, and a streaming utterance segmenter.

>>> vad = VoiceActivityDetector(packaged_vad_path())
>>> vad.speech_segments(load_audio("two_commands.wav"))     # [(start_sample, end_sample), ...]
>>> segmenter = UtteranceSegmenter(vad)
>>> for block in blocks: for utterance in segmenter.feed(block): ...
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.errors import VadError
from edge.speech.audio import SAMPLE_RATE

CHUNK_SAMPLES = 512  # what Silero v5/v6 takes at 16 kHz: 32 ms
CONTEXT_SAMPLES = 64  # the tail of the previous chunk, prepended to each one


def packaged_vad_path() -> Path | None:
    """The ``silero_vad.onnx`` shipped in the ``silero-vad`` package, or None when it is not installed."""
    from importlib.metadata import PackageNotFoundError, files

    # found through the package's file list: importing silero_vad would import torch
    try:
        entries = files("silero-vad") or []
    except PackageNotFoundError:
        return None
    for entry in entries:
        if entry.as_posix().endswith("silero_vad/data/silero_vad.onnx"):
            path = Path(entry.locate())
            return path if path.is_file() else None
    return None


class VoiceActivityDetector:
    """Speech probability per 32 ms chunk of 16 kHz audio, keeping the model's recurrent state between calls."""

    def __init__(self, path: str | Path | None, threshold: float = 0.5):
        import onnxruntime as ort

        if path is None or not Path(path).is_file():
            raise VadError(
                f"Silero VAD model not found: {path}",
                "pip install silero-vad (its silero_vad/data/silero_vad.onnx is used), or pass the .onnx path",
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # a 32 ms chunk is too small to split; leave cores to the decoder
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for corrupt files
            raise VadError(f"Cannot load the VAD model {path}: {e}", "reinstall silero-vad or pass another file") from e
        names = {i.name for i in self.session.get_inputs()}
        if names != {"input", "state", "sr"}:
            raise VadError(
                f"{path} is not a Silero VAD v5/v6 model (inputs {sorted(names)}, expected input, state, sr)",
                "use silero_vad.onnx from silero-vad >= 5",
            )
        self.threshold = threshold
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        """Forget the stream so far: the next chunk starts a new stream."""
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, np.float32)

    def probability(self, chunk: np.ndarray) -> float:
        """Speech probability of the next 512-sample chunk of the stream."""
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        if chunk.shape[0] != CHUNK_SAMPLES:
            raise ValueError(f"expected {CHUNK_SAMPLES} samples, got {chunk.shape[0]}")
        x = np.concatenate([self._context, chunk])[None, :]
        prob, self._state = self.session.run(None, {"input": x, "state": self._state, "sr": self._sr})
        self._context = chunk[-CONTEXT_SAMPLES:]
        return float(prob[0, 0])

    def probabilities(self, audio: np.ndarray) -> np.ndarray:
        """Speech probability of every 512-sample chunk of a whole clip (the last one zero-padded)."""
        self.reset()
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        audio = np.pad(audio, (0, -len(audio) % CHUNK_SAMPLES))
        probs = np.array([self.probability(c) for c in audio.reshape(-1, CHUNK_SAMPLES)], np.float32)
        self.reset()
        return probs

    def speech_segments(self, audio: np.ndarray, **segmenter_options) -> list[tuple[int, int]]:
        """Sample ranges ``(start, end)`` of the utterances in a whole clip, padding included.

        Uses the same rules as :class:`UtteranceSegmenter` (its keyword arguments are accepted here).
        """
        segmenter = UtteranceSegmenter(self, **segmenter_options)
        utterances = segmenter.feed(audio) + segmenter.flush()
        return [(u.start_sample, u.end_sample) for u in utterances]


@dataclass
class Utterance:
    """One stretch of speech cut from a stream; times are seconds from the start of the stream."""

    audio: np.ndarray = field(repr=False)  # float32 16 kHz, padding included
    start_sample: int
    end_sample: int
    detected_at: float  # time.monotonic() when the audio that ended it was captured (or the stream was flushed)

    @property
    def start(self) -> float:
        return self.start_sample / SAMPLE_RATE

    @property
    def end(self) -> float:
        return self.end_sample / SAMPLE_RATE

    @property
    def duration(self) -> float:
        return (self.end_sample - self.start_sample) / SAMPLE_RATE


class UtteranceSegmenter:
    """Cut a stream of 16 kHz samples into utterances: speech bounded by ``min_silence_ms`` of silence.

    A small state machine over 32 ms chunks. Silence -> speech when a chunk's probability reaches ``threshold``;
    speech stays on while probabilities stay above ``threshold - 0.15`` (hysteresis, as Silero does). Once the last
    speech chunk is ``min_silence_ms`` old the utterance is emitted with ``speech_pad_ms`` of audio either side,
    unless its speech lasted under ``min_speech_ms`` (a click or a cough). Utterances longer than
    ``max_utterance_s`` are cut there and the rest continues as a new utterance.
    """

    def __init__(
        self,
        detector: VoiceActivityDetector,
        threshold: float | None = None,
        min_speech_ms: int = 250,
        min_silence_ms: int = 500,
        speech_pad_ms: int = 150,
        max_utterance_s: float = 20.0,
    ):
        if speech_pad_ms > min_silence_ms:
            raise ValueError("speech_pad_ms must not exceed min_silence_ms: the end padding is taken from the silence")
        self.detector = detector
        self.threshold = detector.threshold if threshold is None else threshold
        self.neg_threshold = max(self.threshold - 0.15, 0.01)
        self.min_speech = int(min_speech_ms * SAMPLE_RATE / 1000)
        self.min_silence = int(min_silence_ms * SAMPLE_RATE / 1000)
        self.pad = int(speech_pad_ms * SAMPLE_RATE / 1000)
        self.max_samples = int(max_utterance_s * SAMPLE_RATE)
        self.reset()

    def reset(self) -> None:
        """Start a new stream (sample 0) and forget any pending utterance."""
        self.detector.reset()
        self._pending = np.zeros(0, np.float32)  # samples not yet making a whole chunk
        self._position = 0  # stream samples consumed in whole chunks
        self._in_speech = False
        self._preroll: deque[np.ndarray] = deque(maxlen=-(-self.pad // CHUNK_SAMPLES))  # chunks before speech
        self._chunks: list[np.ndarray] = []  # audio of the current utterance
        self._start = 0  # stream sample where the current utterance's audio begins
        self._speech_start = 0
        self._speech_end = 0  # stream sample after the last speech chunk
        self._voiced = False  # was the previous chunk speech (for the hysteresis)
        self._captured_at = 0.0  # when the block being processed was captured

    def feed(self, samples: np.ndarray, captured_at: float | None = None) -> list[Utterance]:
        """Add a block of float32 samples of any size; return the utterances it completed.

        ``captured_at`` is the ``time.monotonic()`` at which the block was captured (default: now). It stamps
        ``Utterance.detected_at``, so latency measured from it includes any time the block waited in a queue.
        """
        self._captured_at = time.monotonic() if captured_at is None else captured_at
        samples = np.array(samples, dtype=np.float32).reshape(-1)  # a copy: callers may reuse their buffer
        data = np.concatenate([self._pending, samples]) if self._pending.size else samples
        whole = len(data) - len(data) % CHUNK_SAMPLES
        self._pending = data[whole:].copy()
        done = []
        for offset in range(0, whole, CHUNK_SAMPLES):
            utterance = self._step(data[offset : offset + CHUNK_SAMPLES])
            if utterance is not None:
                done.append(utterance)
        return done

    def flush(self) -> list[Utterance]:
        """End the stream: return the utterance in progress (if long enough) and reset."""
        done = []
        self._captured_at = time.monotonic()
        if self._in_speech:
            self._chunks.append(self._pending)
            total = self._position + len(self._pending)
            utterance = self._emit(min(self._speech_end + self.pad, total))
            if utterance is not None:
                done.append(utterance)
        self.reset()
        return done

    def _step(self, chunk: np.ndarray) -> Utterance | None:
        """Advance the state machine by one chunk."""
        prob = self.detector.probability(chunk)
        chunk_start, self._position = self._position, self._position + CHUNK_SAMPLES
        self._voiced = prob >= self.threshold or (self._voiced and prob >= self.neg_threshold)

        if not self._in_speech:
            if not self._voiced:
                self._preroll.append(chunk)
                return None
            self._in_speech = True  # silence -> speech, keeping up to `pad` samples of what came before
            held = np.concatenate([np.zeros(0, np.float32), *self._preroll])
            lead = held[len(held) - min(self.pad, len(held)) :]
            self._chunks, self._start, self._speech_start = [lead], chunk_start - len(lead), chunk_start
            self._preroll.clear()

        self._chunks.append(chunk)
        if self._voiced:
            self._speech_end = self._position
        if self._position - self._start >= self.max_samples:
            # too long: cut at exactly max_samples and carry on in speech with the rest as a new utterance
            cut = self._start + self.max_samples
            audio = np.concatenate(self._chunks)
            self._chunks = [audio]
            utterance = self._emit(cut)
            self._chunks = [audio[self.max_samples :]]
            self._start = self._speech_start = cut
            return utterance
        if self._position - self._speech_end >= self.min_silence:
            utterance = self._emit(self._speech_end + self.pad)
            self._preroll.extend(self._chunks)  # the deque keeps the last chunks: silence to lead the next one
            self._in_speech, self._chunks = False, []
            return utterance
        return None

    def _emit(self, end: int) -> Utterance | None:
        """Package the current utterance up to stream sample ``end``; None if its speech was too short."""
        if self._speech_end - self._speech_start < self.min_speech:
            return None
        audio = np.concatenate(self._chunks)[: end - self._start]
        return Utterance(audio, self._start, self._start + len(audio), self._captured_at)
