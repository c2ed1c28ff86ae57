"""Whisper's repeat guard on decoded pieces (loops, doubled words, restarts are cut) and the fitted window."""

from __future__ import annotations

import pytest

from edge.speech.transcribe import repeated_tail, said_again


@pytest.mark.parametrize(
    "pieces, dropped",
    [
        ([" set", " the", " oven", ".", " set", " the", " oven", "."], 4),  # a loop of four pieces
        ([" a", " b", " c", " a", " b", " c"], 3),
    ],
)
def test_repeats_are_cut(pieces, dropped):
    assert repeated_tail(pieces) == dropped


@pytest.mark.parametrize(
    "pieces, dropped",
    [
        ([" go", " forward", " 10", " meters", ".", " Go"], 1),  # a restart after the sentence end
        ([" Turn", " on", " the", " light", ".", " Turn", " on"], 2),
        ([" Turn", " on", " the", " light", ".", " turn"], 1),
    ],
)
def test_a_restart_is_cut_once_decoding_ends(pieces, dropped):
    assert repeated_tail(pieces, final=True) == dropped
    assert repeated_tail(pieces) == 0  # while decoding, it may still be a sentence that starts alike


@pytest.mark.parametrize(
    "pieces",
    [
        [" This", " is", " the", " corpus", ".", " This", " is", " me", " talking", "."],
        [" Turn", " on", " the", " light", ".", " Turn", " off", " the", " fan"],
    ],
)
def test_sentences_that_start_alike_are_kept(pieces):
    """Real speech, from recorded clips of people (benchmarks asr-human): the restart rule cut these after one word."""
    for end in range(1, len(pieces) + 1):
        assert repeated_tail(pieces[:end]) == 0
    assert repeated_tail(pieces, final=True) == 0


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
    assert not pieces or not said_again(pieces[:-1], pieces[-1])


@pytest.mark.parametrize(
    "pieces, piece",
    [
        ([" start"], " start"),  # a word said twice
        ([" Start"], " start"),
        ([" go", "!", "!"], "!"),  # any piece three times
        ([" Montreal", ",", " uh", " uh"], " uh"),
    ],
)
def test_stutters_are_found(pieces, piece):
    assert said_again(pieces, piece)


def test_the_decode_loop_passes_over_a_stutter(monkeypatch):
    """A stutter is not taken: the decoder's next choice is, and what follows is kept ('start start the saw')."""
    import numpy as np

    from edge.speech.transcribe import SpeechRecognizer

    vocab = {1: " start", 2: " the", 3: " saw", 9: "<end>"}

    class Fake:
        speech = type("S", (), {"start_ids": [0], "end_id": 9})()
        _suppress = np.array([], np.int64)
        _begin_suppress = np.array([], np.int64)
        _prompt_ids: list[int] = []  # no initial prompt
        tokenizer = type("T", (), {"decode": staticmethod(lambda ids: "".join(vocab[i] for i in ids))})()

        def _empty_cache(self):
            return {}

        def _step(self, new, cache, cross):
            logits = np.zeros(10, np.float32)
            for token, score in following[new[-1]].items():
                logits[token] = score
            return logits

    # what the fake model rates highest after each token: after "start", "start" again, then "the"
    following = {0: {1: 1.0}, 1: {1: 1.0, 2: 0.5}, 2: {3: 1.0}, 3: {9: 1.0}}
    assert SpeechRecognizer.decode(Fake(), {}, 20) == [1, 2, 3]


def _recognizer(audio_context: str, min_window_s: float):
    """A SpeechRecognizer with only what ``features`` reads: no bundle, no sessions."""
    from edge.bundle import SpeechConfig
    from edge.speech.transcribe import SpeechRecognizer

    r = object.__new__(SpeechRecognizer)
    r.speech = SpeechConfig(
        sample_rate=16000,
        num_mels=80,
        n_fft=400,
        hop_length=160,
        window_s=30.0,
        max_source_positions=1500,
        start_ids=[0],
        end_id=1,
        suppress_ids=[],
        begin_suppress_ids=[],
        max_new_tokens=224,
    )
    r.audio_context, r.min_window_s = audio_context, min_window_s
    return r


def _tone(seconds: float):
    import numpy as np

    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_the_fitted_window_is_at_least_ten_seconds_of_zero_features_past_the_silence():
    """A 3 s clip: 3 s of audio and 1 s of silence as Whisper computes them, then zeros up to 10 s."""
    import numpy as np

    from edge.speech.audio import log_mel_spectrogram
    from edge.speech.transcribe import FILL, FIT_MIN_WINDOW_S, FIT_TRAILING_SILENCE_S

    audio = _tone(3.0)
    mel = _recognizer("fit", FIT_MIN_WINDOW_S).features(audio)[0]
    assert mel.shape == (80, int(FIT_MIN_WINDOW_S * 100))
    heard = int((3.0 + FIT_TRAILING_SILENCE_S) * 100)
    padded = np.pad(audio, (0, int(FIT_TRAILING_SILENCE_S * 16000)))
    np.testing.assert_array_equal(mel[:, :heard], log_mel_spectrogram(padded))
    assert (mel[:, heard:] == FILL).all()
    assert mel[:, heard - 1].min() < FILL  # the silence is the log-mel floor, below the fill


def test_no_minimum_window_fits_the_clip_alone_and_long_clips_are_not_padded():
    from edge.speech.transcribe import FIT_TRAILING_SILENCE_S

    assert _recognizer("fit", 0.0).features(_tone(3.0)).shape == (1, 80, int((3.0 + FIT_TRAILING_SILENCE_S) * 100))
    assert _recognizer("fit", 10.0).features(_tone(12.0)).shape == (1, 80, 1300)
    assert _recognizer("fit", 10.0).features(_tone(40.0)).shape == (1, 80, 3000)  # one window at most
    assert _recognizer("full", 10.0).features(_tone(3.0)).shape == (1, 80, 3000)
    assert _recognizer("fit", 10.0).features(_tone(3.01)).shape[2] % 2 == 0  # the encoder's stride 2


def test_the_minimum_window_is_checked():
    from types import SimpleNamespace

    from edge.bundle import SPEECH_RECOGNITION
    from edge.speech.transcribe import SpeechRecognizer

    speech = _recognizer("fit", 0.0).speech
    bundle = SimpleNamespace(manifest=SimpleNamespace(task=SPEECH_RECOGNITION, speech=speech), path="b")
    with pytest.raises(ValueError, match="min_window_s"):
        SpeechRecognizer(bundle, min_window_s=31.0)
