"""Where edge keeps per-user state: one folder, found from the environment.

Its own module so that :mod:`edge.bundle` (the checksum record) and :mod:`edge.cache` (the
default bundles, which open bundles) both use it without importing each other.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$EDGE_CACHE_DIR``, else ``$XDG_CACHE_HOME/edge``, else ``~/.cache/edge``."""
    if env := os.environ.get("EDGE_CACHE_DIR"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edge"
