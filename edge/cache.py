"""Where edge keeps per-user state: the default bundle and the checksum record."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_SOURCE = "smollm2-135m"
# Chosen by measurement (README "Choosing a precision", `python -m benchmarks precisions`):
# int4 also passes the export quality gate and is 2-3x faster, but on SmolLM2-135M it flips
# near-tied greedy choices that fp32 gets right (the first word of "What is the capital of
# France?"), so the default stays exact and int4 is the documented choice for boards.
DEFAULT_PRECISION = "fp32"


def cache_dir() -> Path:
    """``$EDGE_CACHE_DIR``, else ``$XDG_CACHE_HOME/edge``, else ``~/.cache/edge``."""
    if env := os.environ.get("EDGE_CACHE_DIR"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edge"


def default_bundle_dir(precision: str = DEFAULT_PRECISION) -> Path:
    """Where the default model's bundle lives once built."""
    return cache_dir() / "bundles" / f"{DEFAULT_SOURCE}-{precision}"


def build_command(precision: str = DEFAULT_PRECISION) -> str:
    """The one command that builds the default bundle."""
    return f"edge-export {DEFAULT_SOURCE} --precision {precision} --out {default_bundle_dir(precision)}"
