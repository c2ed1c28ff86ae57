"""The export toolchain's errors, in one small module every stage can import without a cycle.

Each is an :class:`edge.errors.EdgeError`: a message and the fix, printed by ``edge-export``.
"""

from __future__ import annotations

from edge.errors import EdgeError


class ExportError(EdgeError):
    """An export that cannot go on; nothing has been written at the destination."""


class QualityGateError(ExportError):
    """The quantized model strays further from fp32 than the thresholds allow (with --strict)."""


class SourceError(EdgeError):
    """The source cannot be found or is not a model edge can export."""
