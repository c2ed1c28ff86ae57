"""The packaged wake-word models: found through ``pymicro-wakeword``'s file list, each read from its JSON sidecar."""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from ..errors import EdgeError
from ..jsonio import read_json_file

WAKE_PACKAGE = "pymicro-wakeword"
WAKE_INSTALL_HINT = "pip install 'edge[assistant]' (the pymicro-wakeword package and its models)"
DEFAULT_WAKE_WORD = "okay_nabu"


@dataclass(frozen=True)
class WakeWordSpec:
    """One microWakeWord model: its phrase, file, and the detection rule its authors tuned for it."""

    name: str  # "okay_nabu": the file stem, what --wake takes
    phrase: str  # "Okay Nabu"
    model_path: Path
    probability_cutoff: float  # the mean probability over the window must exceed this
    sliding_window_size: int  # how many model outputs (30 ms each) are averaged

    @classmethod
    def from_sidecar(cls, path: Path) -> WakeWordSpec:
        config, _ = read_json_file(path)
        micro = config["micro"]
        return cls(
            name=Path(config["model"]).stem,
            phrase=config["wake_word"],
            model_path=path.parent / config["model"],
            probability_cutoff=float(micro["probability_cutoff"]),
            sliding_window_size=int(micro["sliding_window_size"]),
        )


def _sidecars() -> dict[str, Path]:
    # through the package's file list, as edge.vad finds Silero: importing the package is not needed to list them
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


def wake_word_names() -> list[str]:
    """The wake words installed here, sorted (empty when ``pymicro-wakeword`` is missing)."""
    return sorted(_sidecars())


def wake_word_spec(name: str) -> WakeWordSpec:
    """The packaged model called ``name``; an unknown name is an error that lists the ones there are."""
    sidecars = _sidecars()
    if not sidecars:
        raise EdgeError("no wake-word models are installed", WAKE_INSTALL_HINT)
    key = name.strip().lower().replace(" ", "_").replace("-", "_")
    if key not in sidecars:
        raise EdgeError(f"no wake word {name!r}", f"pass --wake with one of: {', '.join(sorted(sidecars))}")
    return WakeWordSpec.from_sidecar(sidecars[key])
