"""python -m benchmarks commands finds every command set with hand-written dev requests, and names its results."""

from __future__ import annotations

from benchmarks.commands import COMMAND_SET, command_sets, load_dataset, results_name
from edge.commands.command_set import CommandSet


def test_every_set_with_dev_requests_is_found_and_each_dev_line_validates():
    sets = command_sets()
    assert {"garden-irrigation", "workshop"} <= set(sets)
    for path, dev in sets.values():
        cs = CommandSet.from_file(path)
        data = load_dataset(dev)
        assert len(data) >= 60 or path == COMMAND_SET
        for item in data:
            cs.validate(item["expected"])
        assert any(item["expected"]["command"] == cs.unknown for item in data)


def test_the_reference_set_keeps_its_results_file_and_others_get_their_own():
    sets = command_sets()
    assert results_name(CommandSet.from_file(sets["workshop"][0])) == "commands-workshop"
    if COMMAND_SET.is_file():
        assert results_name(CommandSet.from_file(COMMAND_SET)) == "commands"


def test_each_set_of_lines_gets_its_own_audio_folder(tmp_path, monkeypatch):
    """Clips are cached by line number: two sets sharing a folder would overwrite each other's clips."""
    from benchmarks import asr

    made = []
    monkeypatch.setattr(asr, "AUDIO", tmp_path)
    monkeypatch.setattr(asr, "_synthesize_espeak", lambda text, out, tmp: (made.append(text), out.write_bytes(b"x")))
    first = asr.synthesize("espeak", ["water the lawn", "stop"], "garden")
    second = asr.synthesize("espeak", ["start the lathe"], "workshop")
    assert first[0].parent == tmp_path / "garden" / "espeak" and second[0].parent == tmp_path / "workshop" / "espeak"
    assert asr.synthesize("espeak", ["water the lawn", "stop"], "garden") == first  # cached: nothing remade
    assert asr.synthesize("espeak", ["water the lawn"])[0].parent == tmp_path / "espeak"  # the reference set
    assert made == ["water the lawn", "stop", "start the lathe", "water the lawn"]
