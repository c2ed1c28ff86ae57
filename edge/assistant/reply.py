"""Replies: short answers from the text model, sentence by sentence, and a voice that speaks them and can be cut off."""

from __future__ import annotations

import contextlib
import queue
import re
import threading
import time
from collections.abc import Iterator

from edge.errors import EdgeError
from edge.text.model import TextModel
from edge.text.sampling import SamplingOptions

ANSWER_SYSTEM = (
    "You are a voice assistant on a home appliance panel. Answer the spoken question in one or two short, "
    "plain sentences. Do not use lists or markup."
)
MAX_SENTENCES = 2
MAX_ANSWER_TOKENS = 64  # two short sentences; also bounds the time a rambling model can hold the loop
# greedy decoding alone lets a 135M model fall into saying one word over and over ("the heat heat heat ...")
# out loud; a mild penalty on tokens already in the exchange keeps the two sentences moving
ANSWER_SAMPLING = SamplingOptions(temperature=0, repetition_penalty=1.15)
# a sentence ends at . ! or ? followed by a space: "3.5" and "e.g." mid-word do not end one
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def sentences(pieces: Iterator[str], limit: int = MAX_SENTENCES) -> Iterator[str]:
    """Group streamed text into sentences, yielding each as soon as it is complete; stop after ``limit``."""
    text, said = "", 0
    for piece in pieces:
        text += piece
        *done, text = SENTENCE_END.split(text)
        for sentence in done:
            if sentence.strip():
                yield sentence.strip()
                said += 1
                if said == limit:
                    return
    if text.strip():
        yield text.strip()


class Answerer:
    """Answers requests the command set declines, with the text model, in at most two sentences."""

    def __init__(self, model: TextModel, system: str = ANSWER_SYSTEM):
        if model.manifest.commands is not None:
            # fine-tuned on requests -> commands, it answers a question with a command's JSON, said aloud
            raise EdgeError(
                f"{model.bundle.path} was specialised for commands: it answers only with commands",
                "answer with a chat bundle: edge-run --assistant --answer-model DIR (default: the default text bundle)",
            )
        # a KV cache of its own: the command model keeps its prefilled instructions in the shared one
        self.model = model.fork()
        self.system = system

    def answer(self, question: str) -> Iterator[str]:
        """The reply's sentences, each yielded as soon as the model has finished it (greedy, repeats penalised)."""
        pieces = self.model.stream(
            question, system=self.system, max_new_tokens=MAX_ANSWER_TOKENS, sampling=ANSWER_SAMPLING
        )
        yield from sentences(pieces)


class Voice:
    """Speaks queued sentences on a thread of its own (Piper, then the output device), so the loop keeps listening.

    :meth:`stop` is barge-in: it drops what is queued and cuts the sentence being played.
    ``first_audio_at`` is the ``time.monotonic()`` at which the latest reply's first audio went to the device.
    """

    def __init__(self, speaker, device: int | str | None = None):
        self.speaker = speaker  # an edge.speech.speak.Speaker, or anything with synthesize(text) -> (int16 audio, rate)
        self.device = device
        self.first_audio_at: float | None = None
        self.spoken: list[str] = []  # every sentence played to the end or cut, in order (for tests and logs)
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name="edge-voice", daemon=True)
        self._thread.start()

    def say(self, text: str, *, new_reply: bool = False) -> None:
        """Queue ``text``; ``new_reply`` starts a reply (resets :attr:`first_audio_at`)."""
        if new_reply:
            self.first_audio_at = None
        self._stop.clear()
        self._idle.clear()
        self._queue.put(text)

    @property
    def speaking(self) -> bool:
        return not self._idle.is_set()

    def stop(self) -> None:
        """Barge-in: forget the queued sentences and stop the one playing."""
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._play_stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until everything queued was spoken (or stopped); False on timeout."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        self.stop()
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while (text := self._queue.get()) is not None:
            if not self._stop.is_set():
                audio, rate = self.speaker.synthesize(text)
                if not self._stop.is_set():
                    if self.first_audio_at is None:
                        self.first_audio_at = time.monotonic()
                    self.spoken.append(text)
                    self._play(audio, rate)
            if self._queue.empty():
                self._idle.set()

    def _play(self, audio, rate: int) -> None:
        from edge.speech.microphone import import_sounddevice

        sd = import_sounddevice()
        sd.play(audio, rate, device=self.device)
        sd.wait()  # returns early when stop() calls sd.stop()

    def _play_stop(self) -> None:
        from edge.speech.microphone import import_sounddevice

        # nothing playing, or no audio stack: there is nothing to stop
        with contextlib.suppress(Exception):
            import_sounddevice().stop()
