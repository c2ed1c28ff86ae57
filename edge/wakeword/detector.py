"""Streaming wake-word detection: 16 kHz samples -> micro_frontend features (10 ms) -> microWakeWord model."""

from __future__ import annotations

import numpy as np

from ..errors import EdgeError
from .models import DEFAULT_WAKE_WORD, WAKE_INSTALL_HINT, WakeWordSpec, wake_word_spec

STEP_SAMPLES = 160  # the frontend's 10 ms hop
WINDOW_SAMPLES = 480  # its 30 ms analysis window: the first feature needs this much audio
# After a detection the model is restarted and deaf for this long, so one phrase is one wake-up.
REFRACTORY_S = 1.0


class WakeWordDetector:
    """Feed float32 16 kHz blocks of any size; get back the stream samples at which the wake word ended.

    The model is stateful (streaming convolutions keep their own ring buffers), so blocks must be fed in
    order. It costs about 2 ms of CPU per second of audio on the 2-core build machine.
    """

    def __init__(self, spec: WakeWordSpec):
        try:
            from pymicro_features import MicroFrontend
            from pymicro_wakeword import MicroWakeWord
            from pymicro_wakeword.microwakeword import _MODULE_LIB_DIR
        except ImportError as e:
            raise EdgeError(f"wake words need pymicro-wakeword ({e})", WAKE_INSTALL_HINT) from None
        library = next(iter(_MODULE_LIB_DIR.glob("*tensorflowlite_c.*")), None)
        if library is None:
            raise EdgeError("pymicro-wakeword has no TensorFlow Lite library for this platform", WAKE_INSTALL_HINT)
        self.spec = spec
        self._frontend_class = MicroFrontend
        self.model = MicroWakeWord(
            spec.name,
            wake_word=spec.phrase,
            tflite_model=spec.model_path,
            probability_cutoff=spec.probability_cutoff,
            sliding_window_size=spec.sliding_window_size,
            trained_languages=[],
            libtensorflowlite_c_path=library,
        )
        self.reset()

    @property
    def name(self) -> str:
        return self.spec.name

    def reset(self) -> None:
        """Start a new stream at sample 0."""
        self.model.reset()
        self._frontend = self._frontend_class()
        self._pending = b""  # int16 bytes short of a 10 ms step
        self._features = 0  # features computed so far
        self._deaf_until = 0  # feature index before which detections are ignored
        self.last_probability = 0.0

    def feed(self, samples: np.ndarray) -> list[int]:
        """Process the next block; return the stream sample (end of the phrase) of each detection in it."""
        pcm = np.clip(np.round(np.asarray(samples, np.float32) * 32768.0), -32768, 32767).astype("<i2").tobytes()
        data, step = self._pending + pcm, 2 * STEP_SAMPLES
        offset, detections = 0, []
        while offset + step <= len(data):
            result = self._frontend.process_samples(data[offset : offset + step])
            offset += 2 * result.samples_read
            if not result.features:
                continue
            self._features += 1
            features = np.asarray(result.features, np.float32).reshape(1, 1, -1)
            probability = self.model.process_streaming_prob(features)
            self.last_probability = probability or 0.0
            if self._features >= self._deaf_until and self.last_probability > self.spec.probability_cutoff:
                detections.append(self.sample_at(self._features))
                self.model.reset()  # forget the phrase, so its tail cannot trigger again
                self._deaf_until = self._features + int(REFRACTORY_S * 1000 / 10)
        self._pending = data[offset:]
        return detections

    @staticmethod
    def sample_at(features: int) -> int:
        """The stream sample at which the ``features``-th feature's window ends."""
        return WINDOW_SAMPLES + STEP_SAMPLES * (features - 1)


def load_wake_word(name: str = DEFAULT_WAKE_WORD) -> WakeWordDetector:
    """A detector for the packaged wake word ``name`` (see :func:`wake_word_names`)."""
    return WakeWordDetector(wake_word_spec(name))
