"""The wake-word models: microWakeWord's, converted to ONNX in the cache or packaged as TFLite in ``pymicro-wakeword``.

Each is a model file and a JSON sidecar in microWakeWord's format (phrase, probability cutoff, averaging window).
A converted model's sidecar (written by ``python -m export.wakeword``) adds an ``edge`` section: the files with
their checksums, verified before the model is opened, and the TFLite file it was converted from.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path

from edge.errors import EdgeError
from edge.files import sha256_file
from edge.jsonio import read_json_file
from edge.paths import cache_dir

WAKE_PACKAGE = "pymicro-wakeword"
WAKE_INSTALL_HINT = (
    "convert the models for onnxruntime with `python -m export.wakeword` (the export extra), "
    "or pip install 'edge[assistant]' (pymicro-wakeword and its TFLite runtime)"
)
DEFAULT_WAKE_WORD = "okay_nabu"
ONNX, TFLITE = "onnx", "tflite"
# Detection rules edge uses instead of the sidecar's (cutoff, window), chosen on a tuning set of voices, phrases
# and noise clips kept apart from the assistant benchmark's (`python -m benchmarks.wakeword`, results/wakeword.md):
# okay_nabu's 0.85 over 5 outputs heard 41% of the tuning phrases, 0.6 over 5 heard 56%, both with no false wake
# in 0.54 h; 0.5 over 1 output woke once. Only okay_nabu is measured (espeak-ng cannot say the others).
TUNED_RULES = {"okay_nabu": (0.6, 5)}


def converted_dir() -> Path:
    """Where ``python -m export.wakeword`` writes the ONNX wake words by default."""
    return cache_dir() / "wakewords"


@dataclass(frozen=True)
class WakeWordSpec:
    """One microWakeWord model: its phrase, file, and the detection rule its authors tuned for it."""

    name: str  # "okay_nabu": the file stem, what --wake takes
    phrase: str  # "Okay Nabu"
    model_path: Path
    probability_cutoff: float  # the mean probability over the window must exceed this
    sliding_window_size: int  # how many model outputs (30 ms each) are averaged
    runtime: str = TFLITE  # "onnx" (onnxruntime) or "tflite" (pymicro-wakeword's TensorFlow Lite)
    files: dict[str, dict] = field(default_factory=dict)  # converted models: name -> {"sha256", "size"}

    @classmethod
    def from_sidecar(cls, path: Path) -> WakeWordSpec:
        config, _ = read_json_file(path)
        micro, edge = config["micro"], config.get("edge") or {}
        name = Path(config["model"]).stem
        cutoff, window = TUNED_RULES.get(name, (micro["probability_cutoff"], micro["sliding_window_size"]))
        return cls(
            name=name,
            phrase=config["wake_word"],
            model_path=path.parent / config["model"],
            probability_cutoff=float(cutoff),
            sliding_window_size=int(window),
            runtime=ONNX if Path(config["model"]).suffix == ".onnx" else TFLITE,
            files=dict(edge.get("files") or {}),
        )

    def verify(self) -> None:
        """A converted model's files are there and unchanged (size and sha256, as its sidecar records them)."""
        hint = f"convert it again: python -m export.wakeword {self.name}"
        if self.runtime == ONNX and self.model_path.name not in self.files:
            raise EdgeError(f"{self.model_path}: not listed in its sidecar's checksums", hint)
        for name, entry in self.files.items():
            path = self.model_path.parent / name
            if Path(name).name != name or not path.is_file() or path.is_symlink():
                raise EdgeError(f"{path}: missing, or not a plain file beside its sidecar", hint)
            if path.stat().st_size != entry.get("size") or sha256_file(path) != entry.get("sha256"):
                raise EdgeError(f"{path}: checksum mismatch (corrupted or modified)", hint)


def packaged_sidecars() -> dict[str, Path]:
    # through the package's file list, as edge.speech.vad finds Silero: importing the package is not needed to list them
    try:
        entries = importlib.metadata.files(WAKE_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        return {}
    found = {}
    for entry in entries:
        if entry.parent.name == "models" and entry.suffix == ".json":
            path = Path(entry.locate())
            if path.is_file() and path.with_suffix(".tflite").is_file():
                found[path.stem] = path
    return found


def _converted() -> dict[str, Path]:
    folder = converted_dir()
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.glob("*.json")) if p.with_suffix(".onnx").is_file()}


def wake_word_names() -> list[str]:
    """The wake words available here, converted or packaged, sorted (empty when there are none)."""
    return sorted(_converted().keys() | packaged_sidecars().keys())


def wake_word_spec(name: str, runtime: str | None = None) -> WakeWordSpec:
    """The model called ``name``: its ONNX conversion when there is one (or ``runtime="tflite"`` says otherwise),
    else the packaged TFLite model. An unknown name is an error that lists the ones there are."""
    sources = {ONNX: _converted(), TFLITE: packaged_sidecars()}
    if runtime is not None:
        sources = {runtime: sources[runtime]}
    names = sorted(set().union(*sources.values()))
    if not names:
        raise EdgeError("no wake-word models are installed", WAKE_INSTALL_HINT)
    key = name.strip().lower().replace(" ", "_").replace("-", "_")
    for found in sources.values():
        if key in found:
            return WakeWordSpec.from_sidecar(found[key])
    raise EdgeError(f"no wake word {name!r}", f"pass --wake with one of: {', '.join(names)}")
