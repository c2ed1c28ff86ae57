"""Where edge keeps per-user state: the default bundles, where else they were exported, the checksum record."""

from __future__ import annotations

import json
from pathlib import Path

from edge.bundle import MANIFEST, SPEECH_RECOGNITION, TEXT_GENERATION, Manifest, open_bundle
from edge.errors import EdgeError
from edge.files import atomic_write_json
from edge.paths import cache_dir

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


def default_bundle_dir(task: str = TEXT_GENERATION) -> Path:
    """Where the default bundle for ``task`` lives once built."""
    source, precision = DEFAULTS[task]
    return cache_dir() / "bundles" / f"{source}-{precision}"


def build_command(task: str = TEXT_GENERATION) -> str:
    """The one command that builds the default bundle for ``task``."""
    source, precision = DEFAULTS[task]
    return f"edge-export {source} --precision {precision} --out {default_bundle_dir(task)}"


def _index_path() -> Path:
    return cache_dir() / "defaults.json"


def _index() -> dict[str, str]:
    try:
        index = json.loads(_index_path().read_text())
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


def is_default_build(manifest: Manifest) -> bool:
    """Whether a bundle is what :func:`build_command` would build: the default source and precision, unchanged."""
    source, precision = DEFAULTS.get(manifest.task, (None, None))
    return manifest.source.alias == source and manifest.precision == precision and manifest.commands is None


def record_default(task: str, path: Path) -> None:
    """Remember ``path``, a default build exported outside the cache, so edge-run uses it instead of building another.

    Read, changed and replaced whole: two exports finishing at the same instant may keep only one
    record, which costs a rebuild, never a wrong bundle (:func:`default_bundle` checks it).
    """
    _index_path().parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(_index_path(), _index() | {task: str(Path(path).resolve())})


def default_bundle(task: str = TEXT_GENERATION) -> Path:
    """The default bundle for ``task``: the cache's own when built, else the one edge-export last
    recorded if it still verifies (every file's checksum) and is still a default build, else the
    cache's folder, where it is to be built.
    """
    own = default_bundle_dir(task)
    recorded = _index().get(task)
    if (own / MANIFEST).is_file() or not isinstance(recorded, str):
        return own
    try:
        bundle = open_bundle(recorded)
    except (EdgeError, OSError):
        return own
    return bundle.path if bundle.manifest.task == task and is_default_build(bundle.manifest) else own
