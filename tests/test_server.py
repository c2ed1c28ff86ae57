"""edge-run --serve on tiny random models: every endpoint, streaming, the limits, and the real `openai` client."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge.commands import CommandSet
from edge.server import make_server
from edge.worker import Job
from tests.conftest import ROOT
from tests.test_audio import write_pcm

PANEL = ROOT.parent / "shared" / "commands" / "appliance-panel.json"
HELLO = [{"role": "user", "content": "Hello"}]  # the tiny model answers it greedily for 1000+ tokens


def _panel() -> CommandSet:
    if not PANEL.is_file():
        pytest.skip(f"the reference command set is not at {PANEL}")
    return CommandSet.from_file(PANEL)


class Running:
    """A server on a free loopback port, serving on a thread."""

    def __init__(self, server):
        self.server = server
        self.host, self.port = server.server_address[:2]
        self.thread = threading.Thread(target=server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def request(self, method: str, path: str, body=None, headers: dict | None = None):
        """(status, headers, parsed JSON or text) of one request on a fresh connection."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read().decode()
        conn.close()
        kind = r.getheader("Content-Type", "")
        return r.status, r, json.loads(data) if kind.startswith("application/json") else data

    def counts(self) -> dict:
        return self.request("GET", "/health")[2]["requests"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start(model, **options) -> Running:
    return Running(make_server(model, host="127.0.0.1", port=0, log=False, **options))


@pytest.fixture(scope="module")
def models(tiny_bundle, whisper_bundle):
    import edge

    return edge.load(tiny_bundle("llama", "fp32")), edge.load(whisper_bundle("int8"))


@pytest.fixture(scope="module")
def srv(models):
    text, speech = models
    running = start(text, command_set=_panel(), recognizer=speech, max_body=1 << 20)
    yield running
    running.close()


def chat(srv, **fields):
    return srv.request("POST", "/v1/chat/completions", {"messages": HELLO, "max_tokens": 12, **fields})


def events(raw: str) -> list:
    """Server-sent events as parsed objects; the closing ``[DONE]`` as the string."""
    out = []
    for block in raw.split("\n\n"):
        if block.strip():
            assert block.startswith("data: "), block
            payload = block[len("data: ") :]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def assert_openai_error(status, body, expected_status, code=None):
    assert status == expected_status, body
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body


# --- endpoints -------------------------------------------------------------------------------


def test_health_models_and_command_set(srv):
    status, _, health = srv.request("GET", "/health")
    assert status == 200 and health["status"] == "ok" and health["speech"] is True
    assert health["commands"] == "appliance-panel"
    status, _, models = srv.request("GET", "/v1/models")
    assert status == 200 and models["object"] == "list"
    assert [m["id"] for m in models["data"]] == [health["model"]]
    status, _, commands = srv.request("GET", "/v1/commands")
    assert status == 200 and commands["speech"] is True
    assert commands["commands"]["set_light"]["args"]["on"] == {"type": "boolean"}
    assert commands["unknown"] == "unknown"


def test_panel_page_and_its_files_are_served(srv):
    status, r, page = srv.request("GET", "/")
    assert status == 200 and r.getheader("Content-Type").startswith("text/html")
    for asset in ("panel.js", "panel.css"):
        assert asset in page
        assert srv.request("GET", "/" + asset)[0] == 200
    assert "http" not in page.replace("http-equiv", "")  # nothing from the network: no CDN
    for outside in ("/../server.py", "/edge.json", "/%2e%2e/server.py"):
        assert_openai_error(*srv.request("GET", outside)[::2], 404)


def test_chat_completion(srv):
    status, _, body = chat(srv, temperature=0)
    assert status == 200, body
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
    assert choice["finish_reason"] == "length"
    usage = body["usage"]
    assert usage["completion_tokens"] == 12 and usage["total_tokens"] == usage["prompt_tokens"] + 12
    assert chat(srv, temperature=0)[2]["choices"][0]["message"] == choice["message"]  # greedy repeats


def test_seed_repeats_a_sampled_reply(srv):
    first = chat(srv, temperature=1.0, top_p=0.95, seed=7)[2]["choices"][0]["message"]["content"]
    assert chat(srv, temperature=1.0, top_p=0.95, seed=7)[2]["choices"][0]["message"]["content"] == first
    others = {chat(srv, temperature=1.0, seed=s)[2]["choices"][0]["message"]["content"] for s in range(3)}
    assert len(others) > 1


def test_chat_streams_server_sent_events(srv):
    whole = chat(srv, temperature=0)[2]["choices"][0]["message"]["content"]
    status, r, raw = chat(srv, temperature=0, stream=True, stream_options={"include_usage": True})
    assert status == 200 and r.getheader("Content-Type") == "text/event-stream"
    got = events(raw)
    assert got[-1] == "[DONE]"
    chunks = got[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == whole
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 12


def test_completions_with_stop_and_stream(srv):
    body = {"prompt": "Paris is", "max_tokens": 20, "temperature": 0}
    status, _, full = srv.request("POST", "/v1/completions", body)
    assert status == 200 and full["object"] == "text_completion"
    text = full["choices"][0]["text"]
    stop = text[6:9]
    assert stop.strip(), text
    _, _, cut = srv.request("POST", "/v1/completions", body | {"stop": [stop]})
    assert cut["choices"][0]["text"] == text[: text.index(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"
    _, _, raw = srv.request("POST", "/v1/completions", body | {"stream": True})
    got = events(raw)
    assert got[-1] == "[DONE]" and "".join(c["choices"][0]["text"] for c in got[:-1]) == text
    assert got[-2]["choices"][0]["finish_reason"] == "length"


def test_commands_from_text_and_wav(srv, tmp_path):
    panel = _panel()
    status, _, command = srv.request("POST", "/v1/commands", {"text": "turn on the kitchen light"})
    assert status == 200
    assert panel.validate(command) == command
    t = np.arange(16000) / 16000
    wav = write_pcm(tmp_path / "tone.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    status, _, heard = srv.request("POST", "/v1/commands", wav.read_bytes(), {"Content-Type": "audio/wav"})
    assert status == 200, heard
    assert isinstance(heard.pop("transcript"), str)
    assert panel.validate(heard) == heard


# --- errors, in OpenAI's shape ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v1/chat/completions", b"{not json", 400, "invalid_json"),
        ("/v1/chat/completions", {"messages": []}, 400, "invalid_value"),
        ("/v1/chat/completions", {"messages": [{"role": "robot", "content": "hi"}]}, 400, "invalid_value"),
        ("/v1/chat/completions", {"messages": HELLO, "n": 2}, 400, "invalid_value"),
        ("/v1/chat/completions", {"messages": HELLO, "temperature": "hot"}, 400, "invalid_value"),
        ("/v1/completions", {"prompt": 3}, 400, "invalid_value"),
        ("/v1/completions", {"prompt": "x " * 3000}, 400, "context_length_exceeded"),
        ("/v1/commands", {"words": "hi"}, 400, "invalid_value"),
        ("/v1/nothing", {}, 404, "unknown_url"),
    ],
)
def test_bad_requests_answer_in_openai_shape(srv, path, body, status, code):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    got = srv.request("POST", path, raw, {"Content-Type": "application/json"})
    assert_openai_error(got[0], got[2], status, code)


def test_bad_audio_and_media_types(srv):
    wav = {"Content-Type": "audio/wav"}
    assert_openai_error(*srv.request("POST", "/v1/commands", b"RIFF....not a wav", wav)[::2], 400)
    long = np.zeros(31 * 8000, np.int16).tobytes()  # 31 s at 8 kHz: under the body limit, over 30 s
    header = b"RIFF" + (36 + len(long)).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
    header += (1).to_bytes(2, "little") * 2 + (8000).to_bytes(4, "little") + (16000).to_bytes(4, "little")
    header += (2).to_bytes(2, "little") + (16).to_bytes(2, "little") + b"data" + len(long).to_bytes(4, "little")
    status, _, body = srv.request("POST", "/v1/commands", header + long, wav)
    assert_openai_error(status, body, 400)
    assert "30 s" in body["error"]["message"]
    got = srv.request("POST", "/v1/commands", b"hello", {"Content-Type": "text/plain"})
    assert_openai_error(got[0], got[2], 415, "unsupported_media_type")


def test_a_body_over_the_limit_is_refused_unread(srv):
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=30)
    conn.request("POST", "/v1/commands", body=b"\0" * (1100 << 10), headers={"Content-Type": "audio/wav"})
    r = conn.getresponse()
    body = json.loads(r.read())
    assert_openai_error(r.status, body, 413, "request_too_large")
    assert r.getheader("Connection") == "close"
    conn.close()
    assert srv.request("GET", "/health")[0] == 200  # the server is fine


def test_an_unread_body_does_not_leak_into_the_next_request(srv):
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=30)
    conn.request("POST", "/v1/commands", body=b"not for me", headers={"Content-Type": "text/plain"})
    r = conn.getresponse()
    r.read()
    assert r.status == 415 and r.getheader("Connection") == "close"
    conn.close()


def test_commands_need_a_command_set(models):
    running = start(models[0])
    try:
        for method, body in (("GET", None), ("POST", {"text": "lights on"})):
            got = running.request(method, "/v1/commands", body)
            assert_openai_error(got[0], got[2], 404, "no_command_set")
            assert "--commands" in got[2]["error"]["message"]
        assert running.request("GET", "/health")[2]["speech"] is False
    finally:
        running.close()


# --- the queue, timeouts, cancellation -----------------------------------------------------------


def blocker(release: threading.Event) -> Job:
    """A job that holds the worker until ``release`` is set (stands in for a long generation)."""

    def work():
        release.wait(60)
        yield from ()

    return Job(work, timeout_s=120)


def test_a_full_queue_answers_429(models):
    running = start(models[0], queue_size=1)
    release = threading.Event()
    try:
        worker = running.server.app.worker
        worker.submit(blocker(release))  # running
        while not worker.busy:
            time.sleep(0.01)
        worker.submit(blocker(release))  # waiting: the queue is full
        status, r, body = chat(running)
        assert_openai_error(status, body, 429, "queue_full")
        assert body["error"]["type"] == "rate_limit_error" and r.getheader("Retry-After") == "1"
        assert running.counts()["rejected"] == 1
    finally:
        release.set()
        running.close()


def test_a_request_past_its_deadline_answers_504(models):
    running = start(models[0], timeout_s=0.5)
    release = threading.Event()
    try:
        worker = running.server.app.worker
        worker.submit(blocker(release))
        result = {}
        asking = threading.Thread(target=lambda: result.update(r=chat(running)))
        asking.start()
        while worker.jobs.qsize() < 1:  # the request waits behind the blocker...
            time.sleep(0.01)
        time.sleep(0.6)  # ...past its deadline
        release.set()
        asking.join(60)
        status, _, body = result["r"]
        assert_openai_error(status, body, 504, "timeout")
        assert running.counts().get("timeout") == 1
    finally:
        release.set()
        running.close()


def wait_for(condition, seconds: float = 60):
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.05)


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_disconnects_cancels_its_generation(srv, stream):
    before = srv.counts().get("cancelled", 0)
    body = json.dumps({"messages": HELLO, "max_tokens": 1000, "temperature": 0, "stream": stream}).encode()
    sock = socket.create_connection((srv.host, srv.port), timeout=30)
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    if stream:
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")  # it is generating
    else:
        wait_for(lambda: srv.server.app.worker.busy)
    sock.close()
    wait_for(lambda: srv.counts().get("cancelled", 0) == before + 1)
    wait_for(lambda: not srv.server.app.worker.busy)
    assert chat(srv)[0] == 200  # and the worker is free for the next one


# --- the openai package, unmodified ---------------------------------------------------------------


@pytest.fixture(scope="module")
def client(srv):
    openai = pytest.importorskip("openai", reason="the openai package is a dev dependency: pip install -e '.[dev]'")
    return openai.OpenAI(base_url=srv.url + "/v1", api_key="not-needed", max_retries=0)


def test_openai_client_chat(client, srv):
    model = client.models.list().data[0].id
    reply = client.chat.completions.create(
        model=model, messages=HELLO, max_tokens=8, temperature=0, stop=["\n\n"], seed=1
    )
    assert reply.choices[0].message.content and reply.usage.completion_tokens <= 8
    pieces = [
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model=model, messages=HELLO, max_tokens=8, temperature=0, stop=["\n\n"], stream=True
        )
        if c.choices
    ]
    assert "".join(pieces) == reply.choices[0].message.content


def test_openai_client_completions_and_errors(client):
    import openai

    done = client.completions.create(model="any", prompt="Paris is", max_tokens=5, temperature=0)
    assert done.choices[0].text and done.usage.completion_tokens == 5
    streamed = client.completions.create(model="any", prompt="Paris is", max_tokens=5, temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == done.choices[0].text
    with pytest.raises(openai.BadRequestError, match="one choice"):
        client.chat.completions.create(model="any", messages=HELLO, n=2)


# --- the command line ---------------------------------------------------------------------------


def test_serving_beyond_loopback_warns(tiny_bundle):
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "--serve", "--model", str(tiny_bundle("llama", "fp32"))]
        + ["--host", "0.0.0.0", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        lines = []
        while not any("serving" in line for line in lines):
            line = proc.stderr.readline()
            assert line, "".join(lines)
            lines.append(line)
        assert "warning" in lines[0] and "0.0.0.0" in lines[0] and "no authentication" in lines[0]
    finally:
        proc.terminate()
        proc.wait(30)


def test_panel_files_are_package_data():
    config = (ROOT / "pyproject.toml").read_text()
    assert '"panel/*"' in config
    assert {p.name for p in (ROOT / "edge" / "panel").iterdir()} >= {"index.html", "panel.js", "panel.css"}
    assert Path(ROOT / "edge" / "panel" / "index.html").read_text().count("<script") == 1
