"""The bundle format: a folder holding the ONNX graphs, ``tokenizer.json`` and the ``edge.json`` manifest.

A text-generation bundle has one graph, ``model.onnx``. A speech-recognition bundle has
``encoder.onnx`` and ``decoder.onnx`` and, when it can listen, the voice activity detector ``vad.onnx``.

This module is the one place that knows the format. The exporter writes manifests with
:func:`write_manifest`; the runtime reads them with :func:`open_bundle`, which also verifies
every file's checksum before anything is loaded.
"""

from __future__ import annotations

import json
import math
import os
import re
import types
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from edge.errors import BundleError
from edge.files import atomic_write_json, sha256_file
from edge.jsonio import JsonInputError, read_json_file
from edge.paths import cache_dir

FORMAT_VERSION = 1
MANIFEST = "edge.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
REPORT_FILE = "report.json"
ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
VAD_FILE = "vad.onnx"
COMMANDS_FILE = "commands.json"
TEXT_GENERATION = "text-generation"
SPEECH_RECOGNITION = "speech-recognition"
REQUIRED_FILES = {
    TEXT_GENERATION: (MODEL_FILE, TOKENIZER_FILE),
    SPEECH_RECOGNITION: (ENCODER_FILE, DECODER_FILE, TOKENIZER_FILE),
}
PRECISIONS = ("fp32", "int8", "int8-weight", "int4", "fp16")
# what a CPU runs well; fp16 is for GPUs (--provider cuda), where its halved weights and cache pay
CPU_PRECISIONS = ("fp32", "int8", "int8-weight", "int4")

REBUILD_HINT = "rebuild it with `edge-export SOURCE --out DIR --force` (see `edge-export --help`)"

# Upper bounds far past any model edge can run on a board, low enough that a hostile manifest cannot
# make the loader allocate or loop without end.
MAX_LAYERS = 1024
MAX_HEADS = 1024
MAX_HEAD_DIM = 4096
MAX_VOCAB = 10**7
MAX_CONTEXT = 10**7
MAX_FILE_SIZE = 1 << 40


def limits(low: float, high: float, **kw: Any) -> Any:
    """A dataclass field whose number (or each number of its list) must lie in [low, high] when read from JSON."""
    return field(metadata={"range": (low, high)}, **kw)


def one_of(default: str, *choices: str) -> Any:
    """A dataclass field holding one of a few strings."""
    return field(default=default, metadata={"choices": (default, *choices)})


def template(default: str) -> Any:
    """A dataclass field holding a ``str.format`` template whose only placeholder is ``{layer}``."""
    return field(default=default, metadata={"template": True})


SHA256 = {"pattern": "[0-9a-f]{64}"}  # field metadata: a hex digest


@dataclass
class KVCacheLayout:
    """How the graph's key/value cache inputs and outputs are named and shaped (BNSH)."""

    num_layers: int = limits(1, MAX_LAYERS)
    num_kv_heads: int = limits(1, MAX_HEADS)
    head_dim: int = limits(1, MAX_HEAD_DIM)
    dtype: str = one_of("float32", "float16")
    layout: str = "BNSH"
    # "edge": edge's fused graph, one buffer per layer written in place (GroupQueryAttention, fed
    # seqlens_k and total_sequence_length); "concat": a graph exported by optimum, fed attention_mask
    # and position_ids, whose present is past and the new positions, a new tensor each step
    interface: str = one_of("edge", "concat")
    # a manifest's "{layer:>999999999}" or "{0}" would allocate gigabytes or raise in str.format
    past_key: str = template("past_key_values.{layer}.key")
    past_value: str = template("past_key_values.{layer}.value")
    present_key: str = template("present.{layer}.key")
    present_value: str = template("present.{layer}.value")

    def names(self, layer: int) -> tuple[str, str, str, str]:
        """(past_key, past_value, present_key, present_value) names for one layer."""
        return (
            self.past_key.format(layer=layer),
            self.past_value.format(layer=layer),
            self.present_key.format(layer=layer),
            self.present_value.format(layer=layer),
        )


@dataclass
class ChatTemplate:
    """A chat template the runtime renders with string concatenation, no jinja.

    A conversation renders as ``bos`` + for each message ``prefix[role] + content + suffix[role]``
    + ``generation_prompt``. When the first message is not a system message and
    ``default_system`` is set, a system message with that text is rendered first.
    """

    prefix: dict[str, str]
    suffix: dict[str, str]
    generation_prompt: str
    bos: str = ""
    default_system: str | None = None

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """Render ``[{"role": ..., "content": ...}, ...]`` into the prompt text."""
        if self.default_system is not None and (not messages or messages[0]["role"] != "system"):
            messages = [{"role": "system", "content": self.default_system}, *messages]
        parts = [self.bos]
        for m in messages:
            role = m["role"]
            if role not in self.prefix:
                raise ValueError(f"unknown chat role {role!r}; expected one of {sorted(self.prefix)}")
            parts += [self.prefix[role], m["content"], self.suffix[role]]
        if add_generation_prompt:
            parts.append(self.generation_prompt)
        return "".join(parts)


@dataclass
class Tokens:
    """Special token ids: generation stops at any of ``stop_ids``.

    ``add_bos``: the model was trained with ``bos_id`` before every text (Gemma, SentencePiece
    llamas), so the runtime puts it in front of each prompt that does not already start with it.
    Absent in bundles written before the field existed, which read as false.
    """

    stop_ids: list[int] = field(metadata={"range": (0, MAX_VOCAB - 1), "non_empty": True})
    bos_id: int | None = limits(0, MAX_VOCAB - 1, default=None)
    pad_id: int | None = limits(0, MAX_VOCAB - 1, default=None)
    stop_strings: list[str] = field(default_factory=list)
    add_bos: bool = False

    def with_bos(self, ids: list[int]) -> list[int]:
        """``ids`` as the model expects a text to start: ``bos_id`` first when ``add_bos`` (never twice)."""
        if self.add_bos and self.bos_id is not None and ids[:1] != [self.bos_id]:
            return [self.bos_id, *ids]
        return ids


@dataclass
class Source:
    """Where the model came from, so a bundle can be traced and rebuilt."""

    kind: str  # "gguf", "hf-folder", "alias"
    path: str
    sha256: str | None = None
    package: str | None = None
    alias: str | None = None


@dataclass
class SpeechConfig:
    """How a speech-recognition bundle turns audio into features and decodes them (Whisper)."""

    sample_rate: int = limits(4000, 384000)
    num_mels: int = limits(1, 1024)
    n_fft: int = limits(1, 1 << 16)
    hop_length: int = limits(1, 1 << 16)
    window_s: float = limits(0.01, 3600.0)  # the encoder's full window: 30 s of audio
    max_source_positions: int = limits(1, MAX_CONTEXT)  # encoder positions in that window (1500)
    # the prompt: start of transcript [+ language, task] + no timestamps
    start_ids: list[int] = field(metadata={"range": (0, MAX_VOCAB - 1), "non_empty": True})
    end_id: int = limits(0, MAX_VOCAB - 1)
    suppress_ids: list[int] = limits(0, MAX_VOCAB - 1)  # never generated
    begin_suppress_ids: list[int] = limits(0, MAX_VOCAB - 1)  # not generated as the first token
    max_new_tokens: int = limits(1, MAX_CONTEXT)


@dataclass
class FileEntry:
    """One bundle file as the manifest records it."""

    sha256: str = field(metadata=SHA256)
    size: int = limits(0, MAX_FILE_SIZE)


@dataclass
class CommandsInfo:
    """A text bundle fine-tuned for one command set (``edge-export specialise``).

    The set travels in the bundle as ``commands.json``; the runtime maps requests to its
    commands by default, prompting the way the model was trained.
    """

    name: str
    sha256: str = field(metadata=SHA256)  # of commands.json, the set the model was trained on
    file: str = COMMANDS_FILE
    prompt: str = "specialised"
    training: dict[str, Any] = field(default_factory=dict)  # the recipe and what it measured


@dataclass
class Manifest:
    """Everything the runtime needs to know about a bundle, read from ``edge.json``."""

    task: str
    family: str
    precision: str
    context_length: int = limits(1, MAX_CONTEXT)
    vocab_size: int = limits(1, MAX_VOCAB)
    tokens: Tokens
    kv_cache: KVCacheLayout
    source: Source
    files: dict[str, FileEntry]
    chat_template: ChatTemplate | None = None
    speech: SpeechConfig | None = None
    commands: CommandsInfo | None = None
    format_version: int = limits(1, FORMAT_VERSION, default=FORMAT_VERSION)
    created_by: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Any) -> Manifest:
        """Build a manifest from parsed JSON, checking every field's type and range.

        Raises :class:`ManifestFieldError` naming the field (``kv_cache.head_dim``). Fields this edge
        does not know are ignored, so a newer exporter's additions do not break an older runtime.
        """
        m = _from_json(cls, d, "")
        t, sp = m.tokens, m.speech
        token_ids = {"tokens.stop_ids": t.stop_ids, "tokens.bos_id": [t.bos_id], "tokens.pad_id": [t.pad_id]}
        if sp:
            token_ids |= {"speech.start_ids": sp.start_ids, "speech.end_id": [sp.end_id]}
            token_ids |= {"speech.suppress_ids": sp.suppress_ids, "speech.begin_suppress_ids": sp.begin_suppress_ids}
        for at, ids in token_ids.items():
            outside = [i for i in ids if i is not None and i >= m.vocab_size]
            if outside:
                raise ManifestFieldError(at, outside[0], f"token ids below vocab_size ({m.vocab_size})")
        if t.add_bos and t.bos_id is None:
            raise ManifestFieldError("tokens.add_bos", True, "false when tokens.bos_id is null")
        if m.chat_template and (roles := sorted(set(m.chat_template.prefix) - set(m.chat_template.suffix))):
            raise ManifestFieldError("chat_template.suffix", None, f"an entry for each role, {roles[0]!r} too")
        return m

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ManifestFieldError(ValueError):
    """A manifest field of the wrong type or out of range; the message names its path."""

    def __init__(self, at: str, value: Any, expected: str, missing: bool = False):
        shown = "missing" if missing else f"is {_show(value)}"
        super().__init__(f"field {at!r} {shown}; expected {expected}")


def _show(value: Any) -> str:
    """A JSON value as an error shows it: scalars in full (strings cut), containers by kind."""
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + '..."'


def _expected(tp: Any, meta: dict[str, Any]) -> str:
    """What a field of type ``tp`` must hold, in words, for error messages."""
    if isinstance(tp, types.UnionType) or get_origin(tp) is Union:
        return _expected(next(a for a in get_args(tp) if a is not type(None)), meta) + " or null"
    if tp in (int, float):
        low, high = meta["range"]
        return f"{'an integer' if tp is int else 'a number'} from {low} to {high}"
    if get_origin(tp) is list:
        items = "strings" if get_args(tp)[0] is str else "integers from {} to {}".format(*meta["range"])
        return f"a {'non-empty ' if meta.get('non_empty') else ''}list of {items}"
    if tp is str:
        if "pattern" in meta:
            return "a 64-digit lowercase hex sha256"
        if "template" in meta:
            return "a name with '{layer}' as its only placeholder, like 'present.{layer}.key'"
        if "choices" in meta:
            return "one of " + ", ".join(repr(c) for c in meta["choices"])
        return "a string"
    if tp is bool:
        return "true or false"
    return "an object"


def _from_json(cls: type, raw: Any, at: str) -> Any:
    """Build dataclass ``cls`` from parsed JSON ``raw`` found at field path ``at``, checking every field."""
    if not isinstance(raw, dict):
        raise ManifestFieldError(at or "(top level)", raw, "an object")
    hints = get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):
        where = f"{at}.{f.name}" if at else f.name
        if f.name in raw:
            kwargs[f.name] = _typed(hints[f.name], raw[f.name], where, dict(f.metadata))
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ManifestFieldError(where, None, _expected(hints[f.name], dict(f.metadata)), missing=True)
    return cls(**kwargs)


def _typed(tp: Any, value: Any, at: str, meta: dict[str, Any]) -> Any:
    """``value`` checked against type ``tp`` and the field's ``meta`` (range, pattern, template)."""
    if isinstance(tp, types.UnionType) or get_origin(tp) is Union:  # only ``X | None`` occurs
        return None if value is None else _typed(next(a for a in get_args(tp) if a is not type(None)), value, at, meta)
    if is_dataclass(tp):
        return _from_json(tp, value, at)
    if tp is Any:
        return value  # free-form (extra, training): depth and size are already bounded by the JSON reader
    origin = get_origin(tp)
    if origin is dict:
        if not isinstance(value, dict):
            raise ManifestFieldError(at, value, _expected(tp, meta))
        return {k: _typed(get_args(tp)[1], v, f"{at}.{k}", meta) for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list) or (meta.get("non_empty") and not value):
            raise ManifestFieldError(at, value, _expected(tp, meta))
        return [_typed(get_args(tp)[0], v, f"{at}[{i}]", meta) for i, v in enumerate(value)]
    if tp is int or tp is float:
        # bool is an int in Python, not in a manifest; NaN and infinity are no size
        ok = type(value) is int or (tp is float and type(value) is float and math.isfinite(value))
        if not ok or not meta["range"][0] <= value <= meta["range"][1]:
            raise ManifestFieldError(at, value, _expected(tp, meta))
        return float(value) if tp is float else value
    ok = isinstance(value, tp)
    if ok and "pattern" in meta:
        ok = re.fullmatch(meta["pattern"], value) is not None
    if ok and "choices" in meta:
        ok = value in meta["choices"]
    if ok and "template" in meta:
        ok = "{layer}" in value and not re.search(r"[{}]", value.replace("{layer}", ""))
    if not ok:
        raise ManifestFieldError(at, value, _expected(tp, meta))
    return value


@dataclass
class Bundle:
    """An opened, verified bundle: its folder and manifest."""

    path: Path
    manifest: Manifest

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def encoder_path(self) -> Path:
        return self.path / ENCODER_FILE

    @property
    def decoder_path(self) -> Path:
        return self.path / DECODER_FILE

    @property
    def vad_path(self) -> Path | None:
        """The bundled voice activity detector, if the bundle has one."""
        return self.path / VAD_FILE if VAD_FILE in self.manifest.files else None

    @property
    def tokenizer_path(self) -> Path:
        return self.path / TOKENIZER_FILE

    @property
    def commands_path(self) -> Path | None:
        """The command set a specialised bundle was trained on, if this is one."""
        return self.path / self.manifest.commands.file if self.manifest.commands else None


def resolve_bundle_dir(path: str | os.PathLike) -> Path:
    """Accept a bundle folder or the ``model.onnx`` inside one; return the folder."""
    p = Path(path).expanduser()
    if not p.exists():
        raise BundleError(f"{p}: no such file or folder", "pass a bundle folder written by edge-export")
    folder = p if p.is_dir() else p.parent
    if not (folder / MANIFEST).is_file():
        if p.is_file() and p.suffix == ".onnx":
            raise BundleError(
                f"{p}: a bare ONNX file; edge needs the bundle around it ({MANIFEST}, {TOKENIZER_FILE})",
                "export a bundle with `edge-export SOURCE --out DIR`, then run `edge-run --model DIR`",
            )
        raise BundleError(f"{folder}: no {MANIFEST} here, so this is not an edge bundle", REBUILD_HINT)
    return folder


def read_manifest(folder: Path) -> Manifest:
    """Parse ``edge.json`` in ``folder`` with errors that name the file, the field and the fix."""
    path = folder / MANIFEST
    try:
        raw, _ = read_json_file(path)
    except (OSError, JsonInputError) as e:
        raise BundleError(f"{path}: unreadable manifest ({e})", REBUILD_HINT) from None
    if not isinstance(raw, dict):
        raise BundleError(f"{path}: manifest is not a JSON object", REBUILD_HINT)
    version = raw.get("format_version")
    if type(version) is int and version > FORMAT_VERSION:
        raise BundleError(
            f"{path}: bundle format {version} is newer than this edge understands ({FORMAT_VERSION})",
            "upgrade edge (`pip install -U edge`) or export the bundle with this version",
        )
    try:
        if version is None:  # the field has a default for manifests built in Python, not for files
            raise ManifestFieldError("format_version", None, f"an integer from 1 to {FORMAT_VERSION}", missing=True)
        return Manifest.from_dict(raw)
    except ManifestFieldError as e:
        raise BundleError(f"{path}: {e}", REBUILD_HINT) from None


def file_entries(folder: Path, names: list[str]) -> dict[str, FileEntry]:
    """Checksum and size of each named file in ``folder``, for a manifest."""
    return {n: FileEntry(sha256=sha256_file(folder / n), size=(folder / n).stat().st_size) for n in names}


def write_manifest(folder: Path, manifest: Manifest) -> None:
    """Write ``edge.json`` atomically."""
    atomic_write_json(folder / MANIFEST, manifest.to_dict())


def _verified_cache_path() -> Path:
    return cache_dir() / "verified.json"


def _load_verified() -> dict[str, Any]:
    try:
        return json.loads(_verified_cache_path().read_text())
    except (OSError, ValueError):
        return {}


def check_graph_files(folder: Path, manifest: Manifest) -> None:
    """Refuse graphs that would read files outside the bundle (external data at ``../x``, ``/x``, symlinks).

    Runs before onnxruntime opens anything: every external-data location each ``.onnx`` file names
    must be a plain file of the bundle that the manifest lists (and so checksums).
    """
    from edge.onnx_files import ProtobufError, external_data_locations

    root = folder.resolve()
    for name in manifest.files:
        if not name.endswith(".onnx"):
            continue
        try:
            locations = external_data_locations(folder / name)
        except (OSError, ProtobufError) as e:
            raise BundleError(f"{folder / name}: not a readable ONNX model ({e})", REBUILD_HINT) from None
        for location in sorted(locations):
            target = folder / location
            inside = not Path(location).is_absolute() and target.resolve().is_relative_to(root)
            if not inside or target.is_symlink() or location not in manifest.files:
                raise BundleError(
                    f"{folder / name}: refers to {location!r}, outside the bundle or not listed in its manifest",
                    "only use bundles from sources you trust; " + REBUILD_HINT,
                )


def verify_files(folder: Path, manifest: Manifest, full: bool = False) -> None:
    """Check every file listed in the manifest: present, right size, right sha256.

    Hashing a few hundred MB costs a noticeable part of a second on a Pi, so a file whose
    (size, mtime, inode) matches a previous successful check is trusted without rehashing,
    unless ``full`` is set. The record of past checks lives in the per-user cache.
    """
    seen = {} if full else _load_verified()
    updated = False
    for name, entry in manifest.files.items():
        path = folder / name
        if Path(name).is_absolute() or ".." in Path(name).parts or path.is_symlink():
            raise BundleError(f"{folder / MANIFEST}: file entry {name!r} points outside the bundle", REBUILD_HINT)
        try:
            st = path.stat()
        except OSError:
            raise BundleError(f"{path}: missing from the bundle", REBUILD_HINT) from None
        if st.st_size != entry.size:
            raise BundleError(
                f"{path}: size {st.st_size} bytes, manifest says {entry.size} (truncated or replaced)",
                REBUILD_HINT,
            )
        key = str(path.resolve())
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino, entry.sha256]
        if seen.get(key) == stamp:
            continue
        if sha256_file(path) != entry.sha256:
            raise BundleError(f"{path}: checksum mismatch (corrupted or modified)", REBUILD_HINT)
        seen[key] = stamp
        updated = True
    if updated:
        try:
            _verified_cache_path().parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(_verified_cache_path(), seen)
        except OSError:
            pass  # a read-only home only costs a rehash next time


def open_bundle(path: str | os.PathLike, verify: bool = True) -> Bundle:
    """Locate, parse and verify a bundle. ``path`` is its folder or its ``model.onnx``."""
    folder = resolve_bundle_dir(path)
    manifest = read_manifest(folder)
    if manifest.task not in REQUIRED_FILES:
        raise BundleError(
            f"{folder / MANIFEST}: unknown task {manifest.task!r} (this edge runs {', '.join(REQUIRED_FILES)})",
            "upgrade edge, or " + REBUILD_HINT,
        )
    if manifest.task == SPEECH_RECOGNITION and manifest.speech is None:
        raise BundleError(f"{folder / MANIFEST}: a speech-recognition bundle without its speech settings", REBUILD_HINT)
    required_files = [*REQUIRED_FILES[manifest.task], *([manifest.commands.file] if manifest.commands else [])]
    for required in required_files:
        if required not in manifest.files:
            raise BundleError(f"{folder / MANIFEST}: lists no {required}", REBUILD_HINT)
    if verify:
        verify_files(folder, manifest)
    check_graph_files(folder, manifest)
    return Bundle(path=folder, manifest=manifest)
