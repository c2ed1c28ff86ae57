"""Finding and loading the model to export: an alias, a GGUF file, a Hugging Face or CTranslate2 folder."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np

from edge.bundle import SPEECH_RECOGNITION, TEXT_GENERATION, Source
from edge.files import sha256_file

from . import families, gguf_smollm3, gguf_tokenizer, optimum_graph
from .aliases import ALIASES, alias_path
from .ct2 import is_ct2_whisper
from .errors import SourceError

# GGUF architectures whose tensors and metadata transformers' GGUF loader maps back to its own models
# (undoing llama.cpp's q/k permutation for llama and Gemma's stored 1 + w norms) and edge has a
# family for; smollm3 it reads once taught (export.gguf_smollm3).
GGUF_ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3", "gemma3", "phi3", gguf_smollm3.ARCH)


@dataclass
class LoadedSource:
    """A model ready to export: the torch module, its tokenizer and what we know about it."""

    model: Any  # transformers.PreTrainedModel
    tokenizer: Any  # transformers.PreTrainedTokenizerFast
    family: str  # a key of export.families.FAMILIES, or the model type exported through optimum
    source: Source
    stop_ids: list[int]
    bos_id: int | None
    pad_id: int | None
    add_bos: bool = False  # the model reads every text after bos_id (see edge.bundle.Tokens)
    via_optimum: bool = False  # no fused builder: the graph comes from optimum-onnx


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


def _check_gguf(path: Path) -> tuple[bool, dict[str, Any]]:
    """Refuse unsupported GGUF architectures before transformers spends time on them.

    Returns the file's ``tokenizer.ggml.add_bos_token`` (false when absent): transformers' GGUF
    loader builds a tokenizer that adds the BOS whatever the file says (SmolLM2's says false); and
    the config settings the file holds that transformers' loader does not read (:func:`_dropped_settings`).
    """
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except Exception as e:
        raise SourceError(f"{path}: not a readable GGUF file ({e})", "check the file is a complete GGUF") from None
    arch = _gguf_value(reader, "general.architecture") or "?"
    if arch not in GGUF_ARCHITECTURES:
        raise SourceError(
            f"{path}: GGUF architecture {arch!r} is not supported",
            f"edge exports GGUF files of these architectures: {', '.join(GGUF_ARCHITECTURES)}",
        )
    if arch == "phi3" and "tokenizer.ggml.padding_token_id" not in reader.fields:
        # transformers' Phi-3 tokenizer converter reads the pad id unconditionally (an AttributeError deep inside)
        raise SourceError(
            f"{path}: this Phi-3 GGUF names no padding token (tokenizer.ggml.padding_token_id), which "
            "transformers' Phi-3 tokenizer converter needs",
            f"write a copy that names one: gguf-new-metadata --special-token padding '<|endoftext|>' {path} fixed.gguf "
            "(gguf-new-metadata comes with the export extra), or export the model's Hugging Face folder instead",
        )
    settings = _dropped_settings(path, reader, arch)
    if arch == gguf_smollm3.ARCH:
        gguf_smollm3.teach_transformers()
        # SmolLM3Config's default pad id (128004) is the released vocabulary's; the file says its own or none
        # (an id outside the file's vocabulary, or not a number, counts as none: torch would refuse the model)
        pad = _gguf_value(reader, "tokenizer.ggml.padding_token_id")
        tokens = reader.fields.get("tokenizer.ggml.tokens")
        vocab = len(tokens.data) if tokens is not None else 0
        settings["pad_token_id"] = pad if isinstance(pad, int) and 0 <= pad < vocab else None
    adds_bos = bool(_gguf_value(reader, "tokenizer.ggml.add_bos_token"))
    return adds_bos, settings


def _gguf_value(reader: Any, key: str) -> Any:
    """A GGUF metadata field's first value (a str or a number), or None when the file has none."""
    field = reader.fields.get(key)
    if field is None or not field.data:
        return None
    value = field.parts[field.data[0]]
    if field.types and field.types[0].name == "STRING":
        return bytes(value).decode(errors="replace")
    return value[0].item() if value.size else None


def _dropped_settings(path: Path, reader: Any, arch: str) -> dict[str, Any]:
    """Config settings a GGUF holds that transformers 4.57's GGUF loader drops: linear rotary scaling
    (Gemma 3 1B and up scale their global layers' positions by 8) and logit soft caps. Without them the
    source model, and so the export checked against it, would be a different model from the file's."""
    settings: dict[str, Any] = {}
    kind = _gguf_value(reader, f"{arch}.rope.scaling.type")
    factor = _gguf_value(reader, f"{arch}.rope.scaling.factor")
    if not isinstance(factor, (int, float)):
        factor = None  # absent, or not a number: no scaling to apply
    if kind == "linear" and factor and factor != 1.0:
        settings["rope_scaling"] = {"rope_type": "linear", "factor": float(factor)}
    elif kind not in (None, "none", "linear"):
        raise SourceError(
            f"{path}: rotary scaling {kind!r} (factor {factor}) is not supported from a GGUF",
            "export the model's Hugging Face folder, whose config.json transformers reads in full",
        )
    for name in ("attn_logit_softcapping", "final_logit_softcapping"):
        if isinstance(cap := _gguf_value(reader, f"{arch}.{name}"), (int, float)):
            settings[name] = float(cap)
    freqs = next((t for t in reader.tensors if t.name == "rope_freqs.weight"), None)
    if freqs is not None:
        settings["rope_scaling"] = _llama3_scaling(path, reader, arch, np.asarray(freqs.data, np.float64).ravel())
    return settings


# Llama 3.1 and 3.2's published rotary scaling: (low_freq_factor, high_freq_factor, original context)
_LLAMA3_SHAPES = [(low, high, ctx) for low in (1.0, 2.0) for high in (4.0, 8.0) for ctx in (8192, 4096, 16384, 32768)]


def _llama3_factors(inv_freq: np.ndarray, factor: float, low: float, high: float, ctx: int) -> np.ndarray:
    """What llama.cpp's converter writes as ``rope_freqs`` for llama3 scaling: each frequency's divisor."""
    wavelen = 2 * np.pi / inv_freq
    smooth = (ctx / wavelen - low) / (high - low)
    mid = 1 / ((1 - smooth) / factor + smooth)
    return np.where(wavelen < ctx / high, 1.0, np.where(wavelen > ctx / low, factor, mid))


def _llama3_scaling(path: Path, reader: Any, arch: str, factors: np.ndarray) -> dict[str, Any]:
    """The llama3 rotary scaling a GGUF's ``rope_freqs`` tensor holds (Llama 3.1 and 3.2 files).

    llama.cpp writes the scaling as one divisor per frequency and no metadata; transformers' GGUF loader
    drops the tensor, which would leave every position's rotation slightly off. The divisors are matched
    against llama3's formula for the file's base and head size; what matches is the config's rope_scaling.
    """

    def number(key: str) -> float | None:  # a field that is absent, a string or not positive counts as absent
        value = _gguf_value(reader, f"{arch}.{key}")
        return value if isinstance(value, (int, float)) and value > 0 else None

    heads, width = number("attention.head_count"), number("embedding_length")
    dim = number("rope.dimension_count") or (int(width) // int(heads) if heads and width else None)
    base = number("rope.freq_base") or 10000.0
    if dim and len(factors) == int(dim) // 2 and np.isfinite(factors).all() and (factors > 0).all():
        dim = int(dim)
        inv_freq = float(base) ** -(np.arange(0, dim, 2, dtype=np.float64) / dim)
        factor = float(factors.max())
        for low, high, ctx in _LLAMA3_SHAPES:
            if np.allclose(_llama3_factors(inv_freq, factor, low, high, ctx), factors, rtol=1e-3, atol=1e-4):
                return {
                    "rope_type": "llama3",
                    "factor": factor,
                    "low_freq_factor": low,
                    "high_freq_factor": high,
                    "original_max_position_embeddings": ctx,
                }
    raise SourceError(
        f"{path}: its rope_freqs tensor is not the llama3 rotary scaling edge knows ({len(factors)} factors"
        + (f", {float(factors.min()):.3g} to {float(factors.max()):.3g})" if len(factors) else ")"),
        "export the model's Hugging Face folder, whose config.json states its rotary scaling",
    )


def family(config: Any, where: str, optimum_ok: bool = False) -> ModuleType | None:
    """The :mod:`export.families` module that builds graphs for ``config``, or a SourceError saying why not.

    With ``optimum_ok``, a model type without a fused builder that optimum-onnx exports gives None:
    the graph is to come from optimum (:mod:`export.optimum_graph`).
    """
    model_type = getattr(config, "model_type", "?")
    found = families.family_for(model_type)
    if found is None:
        if optimum_ok and optimum_graph.supports(model_type):
            return None
        supported = ", ".join(families.SUPPORTED_MODEL_TYPES)
        if not optimum_ok:
            hint = f"edge exports these model types from GGUF files: {supported}"
        elif optimum_graph.installed():
            hint = f"edge's fused graph exports {supported}; optimum-onnx does not export {model_type!r} either"
        else:
            hint = (
                f"edge's fused graph exports {supported}; for others install {optimum_graph.PACKAGE} "
                "(pip install 'edge[bench]') and edge exports them through optimum, slower"
            )
        raise SourceError(
            f"{where}: model type {model_type!r} is not supported (edge has no graph builder for it)", hint
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


def load(src: Source, via_optimum: bool = False) -> LoadedSource:
    """Load the source into a float32 torch model and its fast tokenizer.

    ``via_optimum`` takes optimum-onnx's graph even for a family edge builds (to compare the two).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(src.path)
    gguf_adds_bos = False
    model_kwargs: dict[str, Any] = {}
    if src.kind == "gguf":
        gguf_adds_bos, settings = _check_gguf(path)
        src.sha256 = sha256_file(path)
        kwargs = {"gguf_file": path.name}
        folder = path.parent
        if settings:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(folder, gguf_file=path.name)
            for name, value in settings.items():
                setattr(getattr(config, "text_config", config), name, value)
            model_kwargs["config"] = config
    else:
        config = json.loads((path / "config.json").read_text())
        family(SimpleNamespace(**config), str(path), optimum_ok=True)
        kwargs = {}
        folder = path
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kwargs, **model_kwargs)
    except (OSError, ValueError, KeyError, NotImplementedError) as e:
        raise SourceError(
            f"{path}: could not load the model ({e})", "check the model files are complete and supported"
        ) from None
    if not getattr(tokenizer, "is_fast", False):
        raise SourceError(f"{path}: no fast tokenizer (tokenizer.json)", "add tokenizer.json to the model folder")
    if src.kind == "gguf":
        gguf_tokenizer.repair(tokenizer)  # Gemma's vocabulary comes back as Unigram; it is BPE
        gguf_tokenizer.restore_spaces(tokenizer)  # Phi-3's comes back without its space handling
    model.eval()
    found = family(model.config, str(path), optimum_ok=src.kind != "gguf")
    if via_optimum and src.kind != "gguf" and optimum_graph.supports(model.config.model_type):
        found = None

    # generation_config knows the real end-of-turn token; GGUF-derived tokenizer configs
    # name <|im_start|> as eos for SmolLM2, which would stop before the reply begins.
    gen = getattr(model, "generation_config", None)
    stop_ids = _as_list(getattr(gen, "eos_token_id", None)) or _as_list(model.config.eos_token_id)
    if not stop_ids and tokenizer.eos_token_id is not None:
        stop_ids = [tokenizer.eos_token_id]
    bos = _first(getattr(gen, "bos_token_id", None), model.config.bos_token_id)
    pad = _first(getattr(gen, "pad_token_id", None), model.config.pad_token_id)
    name = found.NAME if found is not None else model.config.model_type
    add_bos = getattr(found, "ALWAYS_BOS", False) or (
        gguf_adds_bos if src.kind == "gguf" else _tokenizer_adds_bos(tokenizer)
    )
    if add_bos and bos is None:
        bos = tokenizer.bos_token_id
    return LoadedSource(
        model, tokenizer, name, src, stop_ids, bos, pad, add_bos=add_bos and bos is not None, via_optimum=found is None
    )


def _tokenizer_adds_bos(tokenizer: Any) -> bool:
    """Whether a Hugging Face tokenizer puts its BOS before a text (``add_bos_token`` in its config)."""
    bos = tokenizer.bos_token_id
    plain = tokenizer.encode("a", add_special_tokens=False)
    return bos is not None and tokenizer("a").input_ids[:1] == [bos] and plain[:1] != [bos]
