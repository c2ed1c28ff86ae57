"""Streaming wake-word detection: 16 kHz samples -> micro_frontend features (10 ms) -> microWakeWord model.

The features come from :mod:`.features` (numpy, equal to TFLite Micro's frontend); the model runs on
onnxruntime when it was converted (``python -m export.wakeword``), else on pymicro-wakeword's TFLite runtime.
Both see the same features and give the same decisions (``test_wakeword.py``); the choice is in the README.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from edge.errors import EdgeError
from edge.wakeword.features import STEP, WINDOW, MicroFrontend
from edge.wakeword.models import DEFAULT_WAKE_WORD, ONNX, WAKE_INSTALL_HINT, WakeWordSpec, wake_word_spec

STEP_SAMPLES = STEP  # the frontend's 10 ms hop
WINDOW_SAMPLES = WINDOW  # its 30 ms analysis window: the first feature needs this much audio
# After a detection the model is restarted and deaf for this long, so one phrase is one wake-up.
REFRACTORY_S = 1.0


class _OnnxModel:
    """A converted model on onnxruntime: its streaming buffers are inputs and outputs, carried between calls."""

    def __init__(self, spec: WakeWordSpec):
        import onnxruntime as ort

        spec.verify()
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1  # a 50 KB model: threads only cost
        self.session = ort.InferenceSession(str(spec.model_path), options, providers=["CPUExecutionProvider"])
        inputs = self.session.get_inputs()
        self.input = inputs[0].name
        self.stride = int(inputs[0].shape[1])
        self.shapes = {i.name: [int(d) for d in i.shape] for i in inputs[1:]}
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.reset()

    def reset(self) -> None:
        self.state = {name: np.zeros(shape, np.float32) for name, shape in self.shapes.items()}  # as CALL_ONCE sets

    def probability(self, features: np.ndarray) -> float:
        values = self.session.run(None, {self.input: features[None].astype(np.float32)} | self.state)
        named = dict(zip(self.outputs, values, strict=True))
        self.state = {name: named[name + "_next"] for name in self.state}
        return float(named["probability"].reshape(-1)[0])


class _TfliteModel:
    """A packaged model on pymicro-wakeword's TensorFlow Lite runtime, given the same features."""

    def __init__(self, spec: WakeWordSpec):
        try:
            from pymicro_wakeword import MicroWakeWord
            from pymicro_wakeword.microwakeword import _MODULE_LIB_DIR
        except ImportError as e:
            raise EdgeError(f"wake words need pymicro-wakeword ({e})", WAKE_INSTALL_HINT) from None
        library = next(iter(_MODULE_LIB_DIR.glob("*tensorflowlite_c.*")), None)
        if library is None:
            raise EdgeError("pymicro-wakeword has no TensorFlow Lite library for this platform", WAKE_INSTALL_HINT)
        self.model = MicroWakeWord(
            spec.name,
            wake_word=spec.phrase,
            tflite_model=spec.model_path,
            probability_cutoff=spec.probability_cutoff,
            sliding_window_size=1,  # the detector averages, so that the window can be tuned
            trained_languages=[],
            libtensorflowlite_c_path=library,
        )
        self.stride = self.model.stride

    def reset(self) -> None:
        self.model.reset()

    def probability(self, features: np.ndarray) -> float:
        for row in features:  # it collects `stride` frames and runs on the last
            probability = self.model.process_streaming_prob(row.reshape(1, 1, -1))
        return float(probability or 0.0)


class WakeWordDetector:
    """Feed float32 16 kHz blocks of any size; get back the stream samples at which the wake word ended.

    The model runs every ``stride`` features (30 ms); a detection is the mean of its last ``window`` outputs
    above ``cutoff`` (both default to the values in the model's sidecar). The model is stateful (streaming
    convolutions keep their own ring buffers), so blocks must be fed in order.
    """

    def __init__(self, spec: WakeWordSpec, cutoff: float | None = None, window: int | None = None):
        self.spec = spec
        self.cutoff = spec.probability_cutoff if cutoff is None else cutoff
        self.window = spec.sliding_window_size if window is None else window
        self.model = _OnnxModel(spec) if spec.runtime == ONNX else _TfliteModel(spec)
        self.frontend = MicroFrontend()
        self.reset()

    @property
    def name(self) -> str:
        return self.spec.name

    def reset(self) -> None:
        """Start a new stream at sample 0."""
        self.frontend.reset()
        self._restart()
        self._features = 0  # features computed so far
        self._deaf_until = 0  # feature index before which detections are ignored
        self.last_probability = 0.0

    def _restart(self) -> None:
        self.model.reset()
        self._pending: list[np.ndarray] = []  # features short of the model's stride
        self._outputs: deque[float] = deque(maxlen=self.window)

    def feed(self, samples: np.ndarray) -> list[int]:
        """Process the next block; return the stream sample (end of the phrase) of each detection in it."""
        pcm = np.clip(np.round(np.asarray(samples, np.float32) * 32768.0), -32768, 32767).astype(np.int16)
        detections = []
        for row in self.frontend.process(pcm):
            self._features += 1
            self._pending.append(row)
            if len(self._pending) < self.model.stride:
                continue
            self._outputs.append(self.model.probability(np.stack(self._pending)))
            self._pending.clear()
            full = len(self._outputs) == self.window
            self.last_probability = sum(self._outputs) / self.window if full else 0.0
            if self._features >= self._deaf_until and self.last_probability > self.cutoff:
                detections.append(self.sample_at(self._features))
                self._restart()  # forget the phrase, so its tail cannot trigger again
                self._deaf_until = self._features + int(REFRACTORY_S * 1000 / 10)
        return detections

    @staticmethod
    def sample_at(features: int) -> int:
        """The stream sample at which the ``features``-th feature's window ends."""
        return WINDOW_SAMPLES + STEP_SAMPLES * (features - 1)


def load_wake_word(
    name: str = DEFAULT_WAKE_WORD, runtime: str | None = None, cutoff: float | None = None, window: int | None = None
) -> WakeWordDetector:
    """A detector for the wake word ``name`` (see :func:`wake_word_names`); ``runtime`` "onnx" or "tflite"
    picks one where both exist (default: onnx when converted)."""
    return WakeWordDetector(wake_word_spec(name, runtime), cutoff, window)
