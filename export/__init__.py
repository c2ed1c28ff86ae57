"""edge-export: turn a small model into a verified, quantized edge bundle.

>>> from export import export_bundle
>>> export_bundle("smollm2-135m", "bundles/smollm2", precision="int8-weight")
"""

from .pipeline import ExportError, ExportResult, export_bundle

__all__ = ["export_bundle", "ExportError", "ExportResult"]
