"""Requests as a speech model hears them (export/spoken.py) and the command set's words as a speech prompt."""

from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import pytest

from edge.commands.command_model import speech_prompt
from edge.commands.command_set import CommandSet
from export.spoken import ACCENTS, Voice, heard, voices
from export.utterances import Example
from tests.test_commands import PANEL


class FakeRecognizer:
    """Stands in for a speech bundle: 'hears' the clip's length, so clips can be told apart."""

    sample_rate = 16000

    def __init__(self):
        self.clips: list[np.ndarray] = []

    def transcribe(self, audio):
        self.clips.append(audio)
        return type("T", (), {"text": f" heard {len(audio)} "})()


def test_voices_are_varied_and_never_the_default_espeak_voice():
    import random

    drawn = [v for v, _ in zip(voices(random.Random(0)), range(200), strict=False)]
    assert len(set(drawn)) > 150 and {v.accent for v in drawn} == set(ACCENTS)
    assert all(v.variant for v in drawn)  # always a variant: the benchmark's plain voice is never used
    assert 0.3 < sum(v.snr_db is not None for v in drawn) / len(drawn) < 0.7
    assert Voice("en-us", "f2", 150, 60, 20.0).name == "en-us+f2 150 wpm pitch 60, noise 20 dB"


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_heard_speaks_a_sample_of_each_command_and_labels_the_transcripts():
    examples = [Example(f"lamp on number {i}", {"command": "on", "args": {}}) for i in range(5)]
    examples += [Example(f"lamp off number {i}", {"command": "off", "args": {}}) for i in range(2)]
    runs = []
    for _ in range(2):
        rec = FakeRecognizer()
        out = heard(examples, rec, per_command=3, seed=1)
        runs.append([e.text for e in out])
        assert Counter(e.command["command"] for e in out) == {"on": 3, "off": 2}
        assert all(e.text.startswith("heard ") for e in out)  # stripped transcripts
        assert all(c.dtype == np.float32 and 8000 < len(c) < 16000 * 5 for c in rec.clips)
    assert runs[0] == runs[1]  # the same seed: the same requests, voices and noise


def test_speech_prompt_is_the_sets_descriptions_as_sentences_with_every_value():
    cs = CommandSet.from_dict(PANEL)
    prompt = speech_prompt(cs)
    assert prompt.startswith("A test panel with one of every argument type. Set a temperature.")
    assert "Choose a mode: bake or grill." in prompt and "Switch a light: kitchen or dining room." in prompt
    assert "Anything else" not in prompt  # the unknown command is no vocabulary
    assert prompt.endswith(".") and ".." not in prompt


def test_a_recognizer_prompt_needs_the_previous_text_token(whisper_bundle):
    from edge.errors import BundleError
    from edge.speech.transcribe import load

    recognizer = load(whisper_bundle("int8"))
    assert recognizer.prompt is None
    recognizer.prompt = "   "
    assert recognizer.prompt is None
    with pytest.raises(BundleError, match="startofprev"):
        recognizer.prompt = "oven, bake"
    assert recognizer.prompt is None  # a refused prompt leaves none behind


def test_a_recognizer_prompt_is_prefilled_before_the_start_tokens(whisper_bundle, monkeypatch):
    from edge.speech.transcribe import PREVIOUS_TEXT, load

    recognizer = load(whisper_bundle("int8"))
    prev = recognizer.speech.end_id  # the tiny tokenizer has no <|startofprev|>: lend it a token id
    lookup = recognizer.tokenizer.token_to_id
    monkeypatch.setattr(recognizer.tokenizer, "token_to_id", lambda t: prev if t == PREVIOUS_TEXT else lookup(t))
    recognizer.prompt = "oven, bake"
    fed = []
    step = recognizer._step

    def spy(new, cache, cross):
        fed.append(list(new))
        return step(new, cache, cross)

    monkeypatch.setattr(recognizer, "_step", spy)
    recognizer.transcribe(np.zeros(16000, np.float32))
    words = recognizer.tokenizer.encode(" oven, bake")
    assert fed[0] == [prev, *words, *recognizer.speech.start_ids]


def test_edge_run_prompts_the_speech_model_with_the_command_sets_words(whisper_bundle, monkeypatch):
    from argparse import Namespace

    from edge import cli
    from edge.speech.transcribe import PREVIOUS_TEXT
    from edge.text.tokenizer import Tokenizer

    cs = CommandSet.from_dict(PANEL)
    args = Namespace(asr_model=str(whisper_bundle("int8")), threads=1, audio_context="fit")
    assert cli._command_recognizer(args, None, cs).prompt is None  # no <|startofprev|>: transcribes unprompted
    lookup = Tokenizer.token_to_id
    monkeypatch.setattr(Tokenizer, "token_to_id", lambda self, t: 0 if t == PREVIOUS_TEXT else lookup(self, t))
    assert cli._command_recognizer(args, None, cs).prompt == speech_prompt(cs)
