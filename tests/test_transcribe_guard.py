"""Whisper's repeat guard on decoded pieces: loops, doubled words and restarts are cut, speech is kept."""

from __future__ import annotations

import pytest

from edge.speech.transcribe import repeated_tail


@pytest.mark.parametrize(
    "pieces, dropped",
    [
        ([" set", " the", " oven", ".", " set", " the", " oven", "."], 4),  # a loop of four pieces
        ([" a", " b", " c", " a", " b", " c"], 3),
        ([" start", " start"], 1),  # a word said twice
        ([" Start", " start"], 1),
        ([" go", "!", "!", "!"], 1),  # any piece three times
        ([" go", " forward", " 10", " meters", ".", " Go"], 1),  # a restart after the sentence end
        ([" Turn", " on", " the", " light", ".", " Turn", " on"], 2),
        ([" Turn", " on", " the", " light", ".", " turn"], 1),
    ],
)
def test_repeats_are_cut(pieces, dropped):
    assert repeated_tail(pieces) == dropped


@pytest.mark.parametrize(
    "pieces",
    [
        [" set", " the", " oven", " to", " 180"],
        [" go", " to", " to"],  # "to to", "go go": short words may be said twice
        [" 10", " 10"],
        [" go", " forward", " 10", " meters", ".", " Then", " stop"],  # a second sentence of its own
        [" Stop", ".", " Start", " the", " saw"],
        [" the", " lights", " in", " the"],  # "the" twice, apart
        [],
        [" on"],
        [" stop", "."],
    ],
)
def test_speech_is_kept(pieces):
    assert repeated_tail(pieces) == 0


def test_the_decode_loop_cuts_where_the_guard_says(monkeypatch):
    """The loop drops the repeated pieces and stops: checked on a fake decoder that says 'start start ...'."""
    import numpy as np

    from edge.speech.transcribe import SpeechRecognizer

    vocab = {1: " start", 2: " the", 3: " saw", 9: "<end>"}
    script = [1, 1, 2, 3, 9]

    class Fake:
        speech = type("S", (), {"start_ids": [0], "end_id": 9})()
        _suppress = np.array([], np.int64)
        _begin_suppress = np.array([], np.int64)
        _prompt_ids: list[int] = []  # no initial prompt
        tokenizer = type("T", (), {"decode": staticmethod(lambda ids: "".join(vocab[i] for i in ids))})()

        def __init__(self):
            self.step = 0

        def _empty_cache(self):
            return {}

        def _step(self, new, cache, cross):
            logits = np.zeros(10, np.float32)
            logits[script[self.step]] = 1.0
            self.step += 1
            return logits

    assert SpeechRecognizer.decode(Fake(), {}, 20) == [1]
