"""Speech to text with a Whisper bundle: log-mel features, the encoder once, then greedy decoding.

``edge.load(ASR_BUNDLE)`` returns a :class:`SpeechRecognizer`. With ``audio_context="fit"`` the
encoder sees the audio there is plus a second of silence, in a window of at least 10 s whose rest
is zero features (faster-whisper's fill): a 3 s command is encoded as 500 positions instead of the
1500 of a 30 s window, three times less work for the part that dominates. ``min_window_s=0`` fits
the window to the audio alone (fastest, less accurate). ``audio_context="full"`` encodes the
30 s window as Whisper was trained.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge.bundle import SPEECH_RECOGNITION, Bundle, open_bundle
from edge.errors import BundleError
from edge.speech.audio import load_audio, log_mel_spectrogram, pad_or_trim
from edge.text.decoder import session_options
from edge.text.tokenizer import Tokenizer

AUDIO_CONTEXTS = ("fit", "full")
# Whisper learned to end a transcript where speech gives way to the silent padding of its 30 s window;
# a clip cut right at the last word makes it guess on ("... afternoon, after"). A second of silence
# after the audio restores that cue (measured on the dev utterances: WER 0.33 -> 0.21 with Piper).
FIT_TRAILING_SILENCE_S = 1.0
# Fitted to a short clip alone, the encoder sees a window far shorter than any it was trained on, and
# tiny.en mishears more: on the 60 dev commands, WER 14.7% (Piper) against faster-whisper's 9.5% on the
# same weights. A window of at least 10 s whose rest past the trailing silence is zero features, as
# faster-whisper 1.x pads its 30 s window, gives 11.2% Piper and 25.3% espeak-ng (25.6% before), and on
# 145 requests of two other command sets 9.9% and 29.9% (11.8%, 30.6% before; faster-whisper 9.1%,
# 35.5%), for an encoder of 500 positions instead of ~200 (RTF 0.011 -> 0.024, int8, 1 thread).
FIT_MIN_WINDOW_S = 10.0
FILL = 0.0  # the log-mel value past the trailing silence
# Speech runs at a few tokens a second; far more than that is a decoding loop, not speech.
TOKENS_PER_SECOND_CAP = 10
# Whisper reads "previous text" after <|startofprev|>, at most half its 448-token context; words it has
# just read there it is readier to hear (a command set's vocabulary: "bake", not "make").
PREVIOUS_TEXT = "<|startofprev|>"
MAX_PROMPT_TOKENS = 223


@dataclass
class Transcript:
    """One transcribed clip and what it cost."""

    text: str
    tokens: list[int]
    audio_s: float
    processing_s: float

    @property
    def real_time_factor(self) -> float:
        return self.processing_s / self.audio_s if self.audio_s else 0.0


SENTENCE_ENDS = (".", "!", "?")


def _words(text: str) -> list[str]:
    return [w.strip(".,!?;:\"'") for w in text.lower().split()]


def said_again(pieces: list[str], piece: str) -> bool:
    """Whether ``piece`` after ``pieces`` would stutter: a word of three letters or more right after itself
    ("start start"; "to to" and "go go" can be speech), or any piece a third time in a row ("!!!", "uh uh uh").

    The decoder takes its next choice instead of stopping there: people do repeat themselves ("words words
    words", "uh uh uh"), and what they say after it is worth keeping.
    """
    norm = [p.strip().lower() for p in pieces[-2:]]
    this = piece.strip().lower()
    if len(norm) == 2 and norm[0] == norm[1] == this:
        return True
    return bool(norm) and norm[-1] == this and piece.startswith(" ") and this.isalpha() and len(this) > 2


def repeated_tail(pieces: list[str], final: bool = False) -> int:
    """How many of the last decoded pieces repeat what came before them (0: none), so decoding stops there.

    ``pieces`` are the transcript's tokens as text (" go", " forward", "."). Beside stutters
    (:func:`said_again`), greedy Whisper falls into two kinds of repeat on short clips:

    - a loop: the last k >= 2 pieces repeat the k before them ("set the oven. set the oven.");
    - a restart, judged only once decoding has ended (``final``): after the last sentence end, a
      beginning of the transcript's first words and no more ("go forward 10 meters. Go"). Judged
      earlier, it cut real speech whose sentences start alike ("This is the corpus. This is me
      talking", "Turn on the light. Turn off the fan"); a restart that goes on becomes a loop.
    """
    norm = [p.strip().lower() for p in pieces]
    n = len(norm)
    for k in range(2, n // 2 + 1):
        if norm[-k:] == norm[-2 * k : -k]:
            return k
    ends = [i for i, p in enumerate(norm[:-1]) if p.endswith(SENTENCE_ENDS)]
    if ends and final:
        tail = _words("".join(pieces[ends[-1] + 1 :]))
        if tail and tail[0] and _words("".join(pieces[: ends[-1] + 1]))[: len(tail)] == tail:
            return n - ends[-1] - 1
    return 0


class SpeechRecognizer:
    """A speech-recognition bundle loaded for inference."""

    def __init__(
        self,
        bundle: Bundle,
        threads: int | None = None,
        audio_context: str = "fit",
        prompt: str | None = None,
        min_window_s: float = FIT_MIN_WINDOW_S,
    ):
        m = bundle.manifest
        if m.task != SPEECH_RECOGNITION or m.speech is None:
            raise BundleError(
                f"{bundle.path}: a {m.task!r} bundle, not a speech-recognition one",
                "pass a bundle exported from a Whisper model (`edge-export whisper-tiny.en --out DIR`)",
            )
        if audio_context not in AUDIO_CONTEXTS:
            raise ValueError(f"audio_context must be one of {AUDIO_CONTEXTS}, not {audio_context!r}")
        self.bundle = bundle
        self.manifest = m
        self.speech = m.speech
        if not 0 <= min_window_s <= m.speech.window_s:
            raise ValueError(f"min_window_s must be from 0 to {m.speech.window_s:g}, not {min_window_s!r}")
        self.audio_context = audio_context
        self.min_window_s = min_window_s
        self.tokenizer = Tokenizer(bundle.tokenizer_path)
        options = session_options(threads)
        cpu = ["CPUExecutionProvider"]
        self.encoder = ort.InferenceSession(str(bundle.encoder_path), options, providers=cpu)
        self.decoder = ort.InferenceSession(str(bundle.decoder_path), options, providers=cpu)
        layout = m.kv_cache
        self._cache_names = [layout.names(i) for i in range(layout.num_layers)]
        self._cross_names = [o.name for o in self.encoder.get_outputs()]
        self._empty = np.zeros((1, layout.num_kv_heads, 0, layout.head_dim), np.float32)
        self._suppress = np.array(self.speech.suppress_ids, np.int64)
        self._begin_suppress = np.array(self.speech.begin_suppress_ids, np.int64)
        self._prompt: str | None = None
        self._prompt_ids: list[int] = []
        self.prompt = prompt

    @property
    def prompt(self) -> str | None:
        """Text the decoder reads as what was said before each clip (Whisper's initial prompt), or None."""
        return self._prompt

    @prompt.setter
    def prompt(self, text: str | None) -> None:
        prompt = text.strip() if text and text.strip() else None
        ids: list[int] = []
        if prompt is not None:
            prev = self.tokenizer.token_to_id(PREVIOUS_TEXT)
            if prev is None:
                raise BundleError(
                    f"{self.bundle.path}: its tokenizer has no {PREVIOUS_TEXT} token, so it cannot take a prompt",
                    "use a Whisper bundle, or no prompt",
                )
            # the end of a long prompt is kept, as Whisper does: the nearest text matters most
            ids = [prev, *self.tokenizer.encode(" " + prompt)[-MAX_PROMPT_TOKENS:]]
        self._prompt, self._prompt_ids = prompt, ids

    @property
    def sample_rate(self) -> int:
        return self.speech.sample_rate

    def features(self, audio: np.ndarray) -> np.ndarray:
        """Log-mel frames for one window of at most 30 s: [1, n_mels, frames], frames even.

        ``fit``: the audio and FIT_TRAILING_SILENCE_S of silence, then FILL frames up to ``min_window_s``.
        """
        s = self.speech
        window = int(s.window_s * s.sample_rate)
        if self.audio_context == "full":
            audio = pad_or_trim(audio, window)
            frames = window // s.hop_length
        else:
            # the encoder halves the frame count with a stride-2 convolution: keep it even
            step = 2 * s.hop_length
            n = len(audio) + int(FIT_TRAILING_SILENCE_S * s.sample_rate)
            audio = pad_or_trim(audio, min(math.ceil(n / step) * step, window))
            frames = min(max(len(audio), math.ceil(self.min_window_s * s.sample_rate / step) * step), window)
            frames //= s.hop_length
        mel = log_mel_spectrogram(audio, n_mels=s.num_mels, n_fft=s.n_fft, hop_length=s.hop_length)
        if mel.shape[1] < frames:
            mel = np.pad(mel, ((0, 0), (0, frames - mel.shape[1])), constant_values=FILL)
        return mel[None].astype(np.float32)

    def encode(self, audio: np.ndarray) -> dict[str, np.ndarray]:
        """Cross-attention keys and values for every decoder layer."""
        outputs = self.encoder.run(None, {"input_features": self.features(audio)})
        return dict(zip(self._cross_names, outputs, strict=True))

    def _empty_cache(self) -> dict[str, np.ndarray]:
        return {name: self._empty for names in self._cache_names for name in names[:2]}

    def _step(self, new: list[int], cache: dict[str, np.ndarray], cross: dict[str, np.ndarray]) -> np.ndarray:
        """Feed ``new`` tokens; returns the last position's logits and grows ``cache`` in place."""
        outputs = self.decoder.run(None, {"input_ids": np.array([new], np.int64), **cache, **cross})
        for i, (pk, pv, _, _) in enumerate(self._cache_names):
            cache[pk], cache[pv] = outputs[1 + 2 * i], outputs[2 + 2 * i]
        return outputs[0][0, -1]

    def decode(self, cross: dict[str, np.ndarray], max_new_tokens: int) -> list[int]:
        """Greedy decoding: prefill the prompt and the start tokens, then one token per step until the end token."""
        s = self.speech
        cache = self._empty_cache()
        new, tokens = [*self._prompt_ids, *s.start_ids], []
        pieces: list[str] = []  # the tokens as text, for the repeat guard
        while len(tokens) < max_new_tokens:
            logits = self._step(new, cache, cross)
            logits[self._suppress] = -np.inf
            if not tokens:
                logits[self._begin_suppress] = -np.inf
            token = int(logits.argmax())
            piece = self.tokenizer.decode([token])
            if token != s.end_id and said_again(pieces, piece):
                logits[token] = -np.inf
                token = int(logits.argmax())
                piece = self.tokenizer.decode([token])
            if token == s.end_id:
                break
            tokens.append(token)
            pieces.append(piece)
            if repeat := repeated_tail(pieces):
                del tokens[-repeat:]
                return tokens
            new = [token]
        if repeat := repeated_tail(pieces, final=True):
            del tokens[-repeat:]
        return tokens

    def teacher_forced_logits(self, audio: np.ndarray, tokens: list[int]) -> np.ndarray:
        """Raw logits after the start tokens and after each of ``tokens``: row ``t`` predicts ``tokens[t]``.

        For checking an export against its source; one 30 s window at most.
        """
        cross, cache = self.encode(audio), self._empty_cache()
        rows = [self._step(list(self.speech.start_ids), cache, cross)]
        rows += [self._step([t], cache, cross) for t in tokens]
        return np.stack(rows)

    def windows(self, audio: np.ndarray) -> Iterator[np.ndarray]:
        """Consecutive windows of at most 30 s: the encoder's positional embeddings end there."""
        size = int(self.speech.window_s * self.speech.sample_rate)
        for start in range(0, max(len(audio), 1), size):
            yield audio[start : start + size]

    def transcribe(self, audio: np.ndarray) -> Transcript:
        """Transcribe float32 mono audio at :attr:`sample_rate`."""
        start = time.perf_counter()
        audio = np.asarray(audio, np.float32)
        tokens: list[int] = []
        for window in self.windows(audio):
            seconds = len(window) / self.sample_rate
            cap = min(self.speech.max_new_tokens, 8 + math.ceil(seconds * TOKENS_PER_SECOND_CAP))
            tokens += self.decode(self.encode(window), cap)
        text = self.tokenizer.decode(tokens).strip()
        return Transcript(text, tokens, len(audio) / self.sample_rate, time.perf_counter() - start)

    def transcribe_file(self, path: str | os.PathLike) -> Transcript:
        """Transcribe a WAV file (any sample rate and channel count)."""
        return self.transcribe(load_audio(path))


def load(
    path: str | os.PathLike | None = None,
    *,
    threads: int | None = None,
    audio_context: str = "fit",
    prompt: str | None = None,
    min_window_s: float = FIT_MIN_WINDOW_S,
) -> SpeechRecognizer:
    """Open a speech-recognition bundle and load it; ``None`` means the default one."""
    if path is None:
        from edge.cache import default_bundle

        path = default_bundle(SPEECH_RECOGNITION)
    bundle = open_bundle(Path(path))
    return SpeechRecognizer(
        bundle, threads=threads, audio_context=audio_context, prompt=prompt, min_window_s=min_window_s
    )
