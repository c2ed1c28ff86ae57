"""edge: run small language models offline with onnxruntime, tokenizers and numpy.

>>> import edge
>>> model = edge.load("bundles/smollm2")          # a folder written by edge-export
>>> print(model.generate("What is the capital of France?").text)
>>> whisper = edge.load("bundles/whisper")           # a speech-recognition bundle
>>> print(whisper.transcribe_file("command.wav").text)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = [
    "load",
    "EdgeError",
    "BundleError",
    "SamplingOptions",
    "TextModel",
    "SpeechRecognizer",
    "CommandModel",
    "CommandSet",
    "__version__",
]

if TYPE_CHECKING:
    from edge.commands.command_model import CommandModel
    from edge.commands.command_set import CommandSet
    from edge.speech.transcribe import SpeechRecognizer
    from edge.text.model import TextModel

from edge.errors import BundleError, EdgeError


def load(path=None, *, threads: int | None = None, **options) -> TextModel | SpeechRecognizer:
    """Load a bundle: a :class:`TextModel` or a :class:`SpeechRecognizer`, as its manifest's task says.

    ``path`` is the bundle folder (or its ``model.onnx``); ``None`` loads the default text bundle.
    ``options`` go to the model: ``max_context`` and ``provider`` ("cpu", or "cuda" with onnxruntime-gpu)
    for text, ``audio_context`` for speech (which runs on the CPU).
    """
    # onnxruntime is imported here, not at ``import edge``, so the package imports in milliseconds
    from edge.bundle import SPEECH_RECOGNITION, open_bundle
    from edge.cache import default_bundle

    bundle = open_bundle(default_bundle() if path is None else path)
    if bundle.manifest.task == SPEECH_RECOGNITION:
        from edge.speech.transcribe import SpeechRecognizer

        if options.pop("provider", "cpu") != "cpu":
            raise EdgeError(f"{bundle.path}: speech bundles run on the CPU only", "drop provider, or pass 'cpu'")

        return SpeechRecognizer(bundle, threads=threads, **options)
    from edge.text.model import TextModel

    return TextModel(bundle, threads=threads, **options)


def __getattr__(name: str):
    if name == "SamplingOptions":
        from edge.text.sampling import SamplingOptions

        return SamplingOptions
    if name == "TextModel":
        from edge.text.model import TextModel

        return TextModel
    if name == "CommandModel":
        from edge.commands.command_model import CommandModel

        return CommandModel
    if name == "CommandSet":
        from edge.commands.command_set import CommandSet

        return CommandSet
    if name == "SpeechRecognizer":
        from edge.speech.transcribe import SpeechRecognizer

        return SpeechRecognizer
    raise AttributeError(f"module 'edge' has no attribute {name!r}")
