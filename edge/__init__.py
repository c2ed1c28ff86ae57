"""edge: run small language models offline with onnxruntime, tokenizers and numpy.

>>> import edge
>>> model = edge.load("bundles/smollm2")          # a folder written by edge-export
>>> print(model.generate("What is the capital of France?").text)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["load", "EdgeError", "BundleError", "SamplingOptions", "TextModel", "__version__"]

if TYPE_CHECKING:
    from .model import TextModel

from .errors import BundleError, EdgeError


def load(path=None, *, threads: int | None = None, max_context: int | None = None) -> TextModel:
    """Load a text bundle (its folder or its ``model.onnx``); ``None`` loads the default bundle."""
    # onnxruntime is imported here, not at ``import edge``, so the package imports in milliseconds
    from .model import load as _load

    return _load(path, threads=threads, max_context=max_context)


def __getattr__(name: str):
    if name == "SamplingOptions":
        from .sampling import SamplingOptions

        return SamplingOptions
    if name == "TextModel":
        from .model import TextModel

        return TextModel
    raise AttributeError(f"module 'edge' has no attribute {name!r}")
