"""The hands-free loop: wake word -> request (VAD-endpointed) -> transcript -> command or answer -> spoken reply.

>>> assistant = Assistant(load_wake_word("okay_nabu"), VoiceActivityDetector(vad), recognizer, commands, answerer)
>>> for event in assistant.run(file_blocks("session.wav")):
...     print(event.as_dict())        # {"event": "wake", "t": 1.52}, {"event": "command", ...}

``run`` is a generator over any iterable of float32 16 kHz blocks (a microphone, a file), so a recording runs
the same loop as a live room, as fast as the CPU allows; ``t`` is always seconds of *audio* from the start.

Privacy: until a wake word, audio goes to the wake-word model and to a ring buffer of :data:`RING_S` seconds,
nothing else; it is never transcribed, stored or sent. Only the request after a wake word reaches Whisper.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from edge.assistant.endpoint import Endpointing, is_complete
from edge.assistant.reply import Answerer, Voice
from edge.speech.audio import SAMPLE_RATE
from edge.speech.vad import CHUNK_SAMPLES, VoiceActivityDetector
from edge.wakeword import WakeWordDetector

RING_S = 1.0  # the most pre-wake audio ever held, in memory only
# The request starts this long before the wake word was detected: the detector fires up to ~0.2 s after the
# phrase ends (it averages its last outputs), and "okay nabu turn on ..." said in one breath must keep "turn".
PREROLL_S = 0.15
VAD_PAD_S = 0.15  # speech kept after the last voiced chunk, as the utterance segmenter does


@dataclass
class Event:
    """Something the assistant did; ``t`` is seconds of audio from the start of the stream."""

    event: str  # "wake", "command", "answer" or "timeout"
    t: float
    transcript: str | None = None
    command: str | None = None
    args: dict | None = None
    text: str | None = None
    # for measuring, not printed: where the request's speech ended (audio seconds), and the wall time
    # (time.monotonic()) at which the endpoint fell and at which this event was ready
    speech_end: float | None = field(default=None, repr=False)
    endpoint_at: float | None = field(default=None, repr=False)
    ready_at: float = field(default_factory=time.monotonic, repr=False)

    def as_dict(self) -> dict:
        """The event as ``--json`` prints it: only the fields this kind of event has, ``t`` to the millisecond."""
        row = {"event": self.event, "t": round(self.t, 3)}
        if self.event == "command":
            row |= {"transcript": self.transcript, "command": self.command, "args": self.args}
        elif self.event == "answer":
            row |= {"transcript": self.transcript, "text": self.text}
        return row


@dataclass
class _Request:
    """The audio after a wake word, and what the VAD has seen of it."""

    start: int  # stream sample of audio[0]
    wake: int  # stream sample where the wake word ended: speech before it is the wake phrase, not the request
    audio: list[np.ndarray]
    samples: int = 0
    speech_start: int | None = None
    speech_end: int = 0
    voiced_run: int = 0  # consecutive voiced samples: a request starts after min_speech_s of them
    voiced: bool = False
    guess: tuple[int, str, dict] | None = None  # (speech_end, transcript, command) mapped at the short silence

    def clip(self, end: int) -> np.ndarray:
        return np.concatenate(self.audio)[: end - self.start]


class Assistant:
    """Runs the loop; see the module docstring. ``commands`` may be None (then every request is answered)."""

    def __init__(
        self,
        wake: WakeWordDetector,
        vad: VoiceActivityDetector,
        recognizer,
        commands=None,
        answerer: Answerer | None = None,
        voice: Voice | None = None,
        endpointing: Endpointing | None = None,
    ):
        self.wake = wake
        self.vad = vad
        self.recognizer = recognizer  # edge.speech.transcribe.SpeechRecognizer: only ever sees audio after a wake word
        self.commands = commands  # edge.commands.command_model.CommandModel
        self.answerer = answerer
        self.voice = voice
        self.endpointing = endpointing or Endpointing()
        self.transcriptions = 0  # how many clips went to the recognizer (the privacy test counts them)

    def run(self, blocks: Iterable[np.ndarray]) -> Iterator[Event]:
        """Events for a stream of float32 16 kHz blocks of any size, until it ends."""
        self.wake.reset()
        ring: deque[np.ndarray] = deque(maxlen=int(RING_S * SAMPLE_RATE / CHUNK_SAMPLES))
        request: _Request | None = None
        position, pending = 0, np.zeros(0, np.float32)
        for block in blocks:
            data = np.concatenate([pending, np.asarray(block, np.float32).reshape(-1)])
            whole = len(data) - len(data) % CHUNK_SAMPLES
            pending = data[whole:]
            for offset in range(0, whole, CHUNK_SAMPLES):
                chunk = data[offset : offset + CHUNK_SAMPLES]
                position += CHUNK_SAMPLES
                # the wake-word model hears everything, so its stream positions are the loop's own
                detections = self.wake.feed(chunk)
                if request is None:
                    ring.append(chunk)
                    if detections:
                        if self.voice is not None:
                            self.voice.stop()  # barge-in: the wake word cuts off a reply being spoken
                        request = self._start_request(ring, position, detections[0])
                        ring.clear()
                        yield Event("wake", detections[0] / SAMPLE_RATE)
                    continue
                request.audio.append(chunk)
                request.samples += CHUNK_SAMPLES
                event = self._listen(request, chunk, position)
                if event is not None:
                    yield from self._finish(event)
                    request = None
        if request is not None:  # the stream ended mid-request: decide on what was heard
            event = self._listen(request, None, position)
            if event is not None:
                yield from self._finish(event)

    def _start_request(self, ring: deque[np.ndarray], position: int, wake_end: int) -> _Request:
        held = np.concatenate(list(ring))
        start = max(wake_end - int(PREROLL_S * SAMPLE_RATE), position - len(held))
        self.vad.reset()
        return _Request(start=start, wake=wake_end, audio=[held[start - (position - len(held)) :]])

    def _listen(self, request: _Request, chunk: np.ndarray | None, position: int) -> Event | None:
        """Advance the request by one chunk (None: the stream ended); return the event that ends it, if any."""
        e = self.endpointing
        rate = SAMPLE_RATE
        if chunk is not None:
            p = self.vad.probability(chunk)
            threshold = self.vad.threshold
            request.voiced = p >= threshold or (request.voiced and p >= threshold - 0.15)
            request.voiced_run = request.voiced_run + CHUNK_SAMPLES if request.voiced else 0
            if request.voiced:
                if request.speech_start is None and request.voiced_run >= e.min_speech_s * rate:
                    request.speech_start = position - request.voiced_run
                request.speech_end = position
        if request.speech_start is None:
            if chunk is None or position - request.wake >= e.no_speech_s * rate:
                return Event("timeout", position / rate)
            return None
        silence = (position - request.speech_end) / rate
        too_long = position - request.speech_start >= e.max_request_s * rate
        final = chunk is None or too_long or silence >= e.long_s
        if not final and (silence < e.short_s or (request.guess and request.guess[0] == request.speech_end)):
            return None
        endpoint_at = time.monotonic()
        if request.guess is not None and request.guess[0] == request.speech_end:
            _, transcript, command = request.guess  # nothing was said since the short-silence guess: reuse it
        else:
            end = min(request.speech_end + int(VAD_PAD_S * rate), position)
            transcript, command = self._understand(request.clip(end))
            request.guess = (request.speech_end, transcript, command)
        unknown = self.commands.commands.unknown if self.commands is not None else None
        if not final and (self.commands is None or not is_complete(transcript, command, self.commands.commands)):
            return None  # wait for the long silence: the request may go on
        t, speech_end = position / rate, request.speech_end / rate
        if command["command"] != unknown:
            return Event("command", t, transcript, command["command"], command["args"], None, speech_end, endpoint_at)
        return Event("answer", t, transcript, speech_end=speech_end, endpoint_at=endpoint_at)

    def _understand(self, audio: np.ndarray) -> tuple[str, dict]:
        """Transcribe a request and map it to a command of the set (``unknown`` when there is no set)."""
        self.transcriptions += 1
        transcript = self.recognizer.transcribe(audio).text
        if self.commands is None or not transcript.strip():
            return transcript, {"command": None, "args": {}}
        return transcript, self.commands.parse(transcript).command

    def _finish(self, event: Event) -> Iterator[Event]:
        """Reply to a finished request: confirm a command, answer a declined one; then yield the event."""
        from edge.speech.speak import confirmation

        if event.event == "command":
            yield event
            if self.voice is not None:
                self.voice.say(confirmation({"command": event.command, "args": event.args}), new_reply=True)
        elif event.event == "answer":
            said = []
            if self.answerer is not None and event.transcript.strip():
                for sentence in self.answerer.answer(event.transcript):
                    said.append(sentence)
                    if self.voice is not None:
                        self.voice.say(sentence, new_reply=len(said) == 1)  # spoken while the next is generated
            event.text = " ".join(said)
            event.ready_at = time.monotonic()
            yield event
        else:
            yield event
