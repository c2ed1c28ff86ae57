"""Where edge keeps per-user state: the default bundles and the checksum record."""

from __future__ import annotations

import os
from pathlib import Path

from .bundle import SPEECH_RECOGNITION, TEXT_GENERATION

DEFAULT_SOURCE = "smollm2-135m"
# Chosen by measurement (README "Choosing a precision", `python -m benchmarks precisions`):
# int4 also passes the export quality gate and is 2.6-3x faster, but on SmolLM2-135M it flips
# near-tied greedy choices that fp32 gets right (the first word of "What is the capital of
# France?"); int8-weight answers like fp32 but loads slower (weights repacked at load). The
# default stays exact and quickest to start; int4 is the documented choice for boards.
DEFAULT_PRECISION = "fp32"
DEFAULT_SPEECH_SOURCE = "whisper-tiny.en"
# int8 matched fp32's word error rate on the dev utterances (`python -m benchmarks asr`).
DEFAULT_SPEECH_PRECISION = "int8"
DEFAULTS = {
    TEXT_GENERATION: (DEFAULT_SOURCE, DEFAULT_PRECISION),
    SPEECH_RECOGNITION: (DEFAULT_SPEECH_SOURCE, DEFAULT_SPEECH_PRECISION),
}
DEFAULT_PRECISIONS = {task: precision for task, (_, precision) in DEFAULTS.items()}


def cache_dir() -> Path:
    """``$EDGE_CACHE_DIR``, else ``$XDG_CACHE_HOME/edge``, else ``~/.cache/edge``."""
    if env := os.environ.get("EDGE_CACHE_DIR"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edge"


def default_bundle_dir(task: str = TEXT_GENERATION) -> Path:
    """Where the default bundle for ``task`` lives once built."""
    source, precision = DEFAULTS[task]
    return cache_dir() / "bundles" / f"{source}-{precision}"


def build_command(task: str = TEXT_GENERATION) -> str:
    """The one command that builds the default bundle for ``task``."""
    source, precision = DEFAULTS[task]
    return f"edge-export {source} --precision {precision} --out {default_bundle_dir(task)}"
