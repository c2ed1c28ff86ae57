"""edge.speech.microphone through a virtual microphone: ALSA's ``file`` PCM plays a raw file into PortAudio.

The ALSA config is self-contained (it does not include the stock alsa.conf), so ~/.asoundrc or /etc/asound.conf
cannot redirect ``default`` elsewhere; the only capture device is the virtual one. PortAudio reads the ALSA
config when it initialises, so each capture runs in a subprocess with ``ALSA_CONFIG_PATH`` set. The ``null``
slave has no clock: the file arrives faster than real time, and after its end the plugin replays stale
buffer contents instead of stopping, so ``listen`` is given the file's length as ``max_seconds``.
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_vad import two_phrases  # pytest puts tests/ on sys.path (no __init__.py, default import mode)

from edge.errors import MicrophoneError
from edge.speech.microphone import import_sounddevice
from edge.speech.vad import VoiceActivityDetector

ROOT = Path(__file__).resolve().parent.parent

needs_portaudio = pytest.mark.skipif(
    importlib.util.find_spec("sounddevice") is None or ctypes.util.find_library("portaudio") is None,
    reason="needs the sounddevice package and PortAudio (pip install 'edge[voice]'; apt-get install libportaudio2)",
)

ASOUND_CONF = """\
pcm.!default {{
    type file
    slave.pcm {{ type null }}
    file "{outfile}"
    infile "{infile}"
    format "raw"
}}
"""

LISTEN = """
import json, sys, time
from edge.speech.microphone import listen
for u in listen(None, sys.argv[1], max_seconds=float(sys.argv[2])):
    age = time.monotonic() - u.detected_at
    print(json.dumps({"start": u.start_sample, "end": u.end_sample, "samples": len(u.audio), "age": age}), flush=True)
"""

OPEN_DEVICE = """
import sys
from edge.errors import MicrophoneError
from edge.speech.microphone import open_microphone
try:
    open_microphone(sys.argv[1])
except MicrophoneError as e:
    print(str(e))
else:
    print("opened")
"""


def virtual_microphone(folder: Path, audio: np.ndarray, played: Path | None = None) -> dict[str, str]:
    """Write ``audio`` as the raw int16 16 kHz mono input of a virtual ALSA device; return the env that selects it.

    What is played on the same device goes to ``played`` (raw, at the player's rate), else nowhere.
    """
    raw = folder / "mic.raw"
    (np.clip(audio, -1, 1) * 32767).round().astype("<i2").tofile(raw)
    conf = folder / "asound.conf"
    conf.write_text(ASOUND_CONF.format(infile=raw, outfile=played or "/dev/null"))
    return {**os.environ, "ALSA_CONFIG_PATH": str(conf)}


def run_python(code: str, env: dict[str, str], *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@needs_portaudio
def test_listen_on_a_virtual_microphone(tmp_path, vad_path):
    audio, _ = two_phrases(tmp_path)
    env = virtual_microphone(tmp_path, audio)
    result = run_python(LISTEN, env, vad_path, len(audio) / 16000)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 2, result.stdout

    # the device delivers the file sample for sample, so the live result equals the offline one on the same samples
    quantized = np.fromfile(tmp_path / "mic.raw", "<i2").astype(np.float32) / 32768.0
    expected = VoiceActivityDetector(vad_path).speech_segments(quantized)
    assert [(r["start"], r["end"]) for r in rows] == expected
    assert all(r["samples"] == r["end"] - r["start"] for r in rows)
    assert all(0 <= r["age"] < 10 for r in rows)


@needs_portaudio
def test_list_devices_shows_the_default_input(tmp_path):
    env = virtual_microphone(tmp_path, np.zeros(16000, np.float32))
    result = run_python("from edge.speech.microphone import list_devices; print(list_devices())", env)
    assert result.returncode == 0, result.stderr
    assert "default" in result.stdout and "*" in result.stdout


@needs_portaudio
@pytest.mark.parametrize("device", ["99", "no-such-microphone"])
def test_unknown_device_names_the_fix(tmp_path, device):
    env = virtual_microphone(tmp_path, np.zeros(16000, np.float32))
    result = run_python(OPEN_DEVICE, env, device)
    assert result.returncode == 0, result.stderr
    assert "No input device" in result.stdout and device in result.stdout
    assert "edge-run --list-devices" in result.stdout and "--device N" in result.stdout


def test_missing_sounddevice_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # makes `import sounddevice` raise ImportError
    with pytest.raises(MicrophoneError) as e:
        import_sounddevice()
    assert e.value.hint == "pip install 'edge[voice]'"


def test_missing_portaudio_names_the_package(monkeypatch):
    class NoPortAudio:
        # stands in for sounddevice failing to find libportaudio, which it reports as OSError
        def find_spec(self, name, path=None, target=None):
            if name == "sounddevice":
                raise OSError("PortAudio library not found")

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [NoPortAudio(), *sys.meta_path])
    with pytest.raises(MicrophoneError, match="PortAudio") as e:
        import_sounddevice()
    assert "libportaudio2" in e.value.hint


class _Status:
    input_overflow = False


def fake_sounddevice(blocks: int, finishes: bool):
    """A stand-in for sounddevice whose device delivers ``blocks`` blocks and then vanishes.

    ``finishes``: PortAudio notices and ends the stream (finished callback), or the device simply
    stops delivering, as a yanked USB microphone can.
    """
    import threading
    import types

    class RawInputStream:
        def __init__(self, *, callback, finished_callback, blocksize, **_):
            self.callback, self.finished, self.blocksize = callback, finished_callback, blocksize

        def start(self):
            def run():
                for _ in range(blocks):
                    self.callback(b"\x00\x01" * self.blocksize, self.blocksize, None, _Status())
                if finishes:
                    self.finished()

            threading.Thread(target=run, daemon=True).start()

        def close(self, ignore_errors=True):
            pass

    return types.SimpleNamespace(
        PortAudioError=RuntimeError,
        query_devices=lambda device, kind: {"name": "fake usb mic"},
        check_input_settings=lambda **_: None,
        RawInputStream=RawInputStream,
    )


@pytest.mark.parametrize("finishes", [True, False], ids=["stream-ends", "device-goes-silent"])
def test_a_microphone_that_disappears_ends_cleanly_or_says_why(monkeypatch, finishes):
    import edge.speech.microphone as mic

    monkeypatch.setattr(mic, "import_sounddevice", lambda: fake_sounddevice(blocks=5, finishes=finishes))
    microphone = mic.Microphone(stall_timeout=0.5).start()
    if finishes:
        assert len(list(microphone)) == 5
    else:
        with pytest.raises(MicrophoneError, match="delivered no audio") as e:
            list(microphone)
        assert "fake usb mic" in str(e.value) and "--list-devices" in e.value.hint
