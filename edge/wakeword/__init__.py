"""Wake words: packaged microWakeWord models that say when a phrase was spoken in a stream of 16 kHz audio.

>>> detector = load_wake_word("okay_nabu")
>>> for block in microphone:
...     for sample in detector.feed(block): print("wake word ending at sample", sample)

The models ship in ``pymicro-wakeword`` (Apache-2.0: okay_nabu, hey_jarvis, hey_mycroft, alexa), which also
brings their runtime: the TensorFlow Lite C library and the ``micro_frontend`` features in ``pymicro-features``.
It is the ``assistant`` extra; why edge runs them there rather than through onnxruntime is in the README.
"""

from __future__ import annotations

from edge.wakeword.detector import WakeWordDetector, load_wake_word
from edge.wakeword.models import WAKE_INSTALL_HINT, WakeWordSpec, wake_word_names, wake_word_spec

__all__ = [
    "WAKE_INSTALL_HINT",
    "WakeWordDetector",
    "WakeWordSpec",
    "load_wake_word",
    "wake_word_names",
    "wake_word_spec",
]
