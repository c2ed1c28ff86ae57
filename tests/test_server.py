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

from edge.commands.command_set import CommandSet
from edge.serve.server import make_server
from edge.serve.worker import Job
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
        ("/v1/chat/completions", {"messages": HELLO, "max_tokens": 0}, 400, "invalid_value"),
        ("/v1/completions", {"prompt": "hi", "max_tokens": -1}, 400, "invalid_value"),
        ("/v1/completions", {"prompt": "hi", "seed": -1}, 400, "invalid_value"),
        ("/v1/completions", {"prompt": "hi", "seed": 2**70}, 400, "invalid_value"),
        ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "a\\ud800"}]}', 400, "invalid_json"),
        ("/v1/commands", b'{"text": "\\udfff kitchen"}', 400, "invalid_json"),
        ("/v1/chat/completions", b"[" * 100_000 + b"]" * 100_000, 400, "invalid_json"),  # the parser's own limit
        ("/v1/completions", b'{"prompt": "x", "a": ' + b"[" * 65 + b"]" * 65 + b"}", 400, "invalid_json"),
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
def test_a_client_that_disconnects_cancels_its_generation(srv, stream, monkeypatch):
    from edge.text.decoder import OnnxDecoder

    # the tiny test model can write its whole reply in about the time the server takes to notice a
    # closed socket (a fresh CI run once saw it finish first); 2 ms a token keeps the reply going
    forward = OnnxDecoder.forward
    monkeypatch.setattr(OnnxDecoder, "forward", lambda self, ids: (time.sleep(0.002), forward(self, ids))[1])
    before = srv.counts().get("cancelled", 0)
    body = json.dumps({"messages": HELLO, "max_tokens": 1000, "temperature": 0, "stream": stream}).encode()
    sock = socket.create_connection((srv.host, srv.port), timeout=30)
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
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
    assert '"serve/panel/*"' in config
    assert {p.name for p in (ROOT / "edge" / "serve" / "panel").iterdir()} >= {"index.html", "panel.js", "panel.css"}
    assert Path(ROOT / "edge" / "serve" / "panel" / "index.html").read_text().count("<script") == 1


# --- hostile and broken clients ---------------------------------------------------------------------


def exchange(running: Running, data: bytes, *, half_close: bool = False) -> http.client.HTTPResponse:
    """Send ``data`` as it is on a fresh connection; the response (1xx skipped), its body read into ``.body``."""
    with socket.create_connection((running.host, running.port), timeout=30) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        r = http.client.HTTPResponse(sock)
        r.begin()
        r.body = r.read()
    return r


def head(running: Running, method: str, path: str, *headers: str, body: bytes = b"") -> bytes:
    """A request's bytes: the request line, ``Host``, the given header lines, and a Content-Length for ``body``."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {running.host}:{running.port}", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_a_host_name_the_server_does_not_answer_to_is_refused(srv, models):
    # DNS rebinding: a page on evil.example, its name pointed at 127.0.0.1, sends Host: evil.example
    for path in ("/", "/v1/commands", "/health"):
        status, _, body = srv.request("GET", path, headers={"Host": f"evil.example:{srv.port}"})
        assert_openai_error(status, body, 421, "host_not_allowed")
        assert "--allow-host" in body["error"]["message"]
    for host in ("localhost", f"localhost:{srv.port}", f"127.0.0.1:{srv.port}", "[::1]:1234", "LOCALHOST."):
        assert srv.request("GET", "/health", headers={"Host": host})[0] == 200, host
    running = start(models[0], allow_hosts=("panel.local",))
    try:
        assert running.request("GET", "/health", headers={"Host": "Panel.Local:8080"})[0] == 200
        assert running.request("GET", "/health", headers={"Host": "other.local"})[0] == 421
    finally:
        running.close()


def test_a_page_from_another_origin_is_refused(srv):
    same = f"http://127.0.0.1:{srv.port}"
    for origin in ("http://evil.example", f"http://localhost:{srv.port + 1}", "null", "file://", f"ftp://{same[7:]}"):
        got = srv.request("POST", "/v1/commands", {"text": "lights on"}, {"Origin": origin})
        assert_openai_error(got[0], got[2], 403, "origin_not_allowed")
    for origin in (same, f"http://localhost:{srv.port}"):
        assert srv.request("POST", "/v1/commands", {"text": "lights on"}, {"Origin": origin})[0] == 200


def test_a_cross_site_text_plain_post_is_refused_twice_over(srv):
    # a form or a "simple" fetch from another site: no preflight, so the server must refuse it itself
    body = json.dumps({"messages": HELLO, "max_tokens": 2}).encode()
    plain = {"Content-Type": "text/plain"}
    for path in ("/v1/chat/completions", "/v1/commands"):
        got = srv.request("POST", path, body, plain | {"Origin": "http://evil.example"})
        assert_openai_error(got[0], got[2], 403, "origin_not_allowed")  # by the Origin check...
        got = srv.request("POST", path, body, plain)
        assert_openai_error(got[0], got[2], 415, "unsupported_media_type")  # ...and by the media type


@pytest.fixture(scope="module")
def keyed(models):
    running = start(models[0], command_set=_panel(), api_key="s3cret key")
    yield running
    running.close()


def test_an_api_key_guards_every_v1_endpoint(keyed):
    for method, path, body in (
        ("GET", "/v1/models", None),
        ("GET", "/v1/commands", None),
        ("POST", "/v1/commands", {"text": "lights on"}),
        ("POST", "/v1/chat/completions", {"messages": HELLO, "max_tokens": 2}),
    ):
        for auth in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret key"}):
            status, r, got = keyed.request(method, path, body, auth)
            assert_openai_error(status, got, 401, "invalid_api_key")
            assert r.getheader("WWW-Authenticate") == "Bearer"
        assert keyed.request(method, path, body, {"Authorization": "Bearer s3cret key"})[0] == 200
    assert keyed.request("GET", "/")[0] == 200  # the page itself holds nothing: it asks for the key
    assert keyed.request("GET", "/health")[0] == 200  # for a supervisor's liveness probe
    assert "Authorization" in (ROOT / "edge" / "serve" / "panel" / "panel.js").read_text()


def test_openai_client_with_an_api_key(keyed):
    openai = pytest.importorskip("openai", reason="the openai package is a dev dependency: pip install -e '.[dev]'")
    good = openai.OpenAI(base_url=keyed.url + "/v1", api_key="s3cret key", max_retries=0)
    assert good.chat.completions.create(model="x", messages=HELLO, max_tokens=2).choices[0].message.content
    bad = openai.OpenAI(base_url=keyed.url + "/v1", api_key="guess", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="API key"):
        bad.models.list()


@pytest.fixture
def strict(models):
    """A server with short deadlines and few connections, to run out of quickly."""
    running = start(models[0], header_timeout_s=0.5, body_timeout_s=0.5, idle_timeout_s=0.5, max_connections=4)
    yield running
    running.close()


def test_a_slow_request_head_is_cut_off_at_its_deadline(strict):
    with socket.create_connection((strict.host, strict.port), timeout=10) as slow:
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")  # half a header line, then nothing
        began = time.monotonic()
        assert strict.request("GET", "/health")[0] == 200  # others are served meanwhile
        answer = slow.recv(4096)
        waited = time.monotonic() - began
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert 0.3 < waited < 3, waited


def test_a_slow_body_is_cut_off_at_its_deadline(strict):
    with socket.create_connection((strict.host, strict.port), timeout=10) as slow:
        slow.sendall(head(strict, "POST", "/v1/completions", "Content-Type: application/json", "Content-Length: 100"))
        slow.sendall(b'{"prompt": ')
        assert slow.recv(4096).startswith(b"HTTP/1.1 408")
    assert strict.request("GET", "/health")[0] == 200


def test_an_idle_keep_alive_connection_is_closed(strict):
    conn = http.client.HTTPConnection(strict.host, strict.port, timeout=10)
    conn.request("GET", "/health")
    assert conn.getresponse().read()
    time.sleep(1.0)
    assert conn.sock.recv(1) == b""  # closed by the server after 0.5 s idle
    conn.close()


def test_connections_over_the_cap_get_503(strict):
    held = [socket.create_connection((strict.host, strict.port), timeout=10) for _ in range(4)]
    try:
        time.sleep(0.1)
        with socket.create_connection((strict.host, strict.port), timeout=10) as extra:
            answer = extra.recv(4096)
        assert answer.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in answer, answer
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "busy"
    finally:
        for sock in held:
            sock.close()
    wait_for(lambda: strict.server.connections == 0, 10)
    assert strict.request("GET", "/health")[2]["requests"]["too_many_connections"] == 1


def test_a_get_with_a_body_does_not_run_the_body_as_a_request(srv):
    smuggled = head(srv, "GET", "/v1/models")
    data = head(srv, "GET", "/health", body=smuggled) + head(srv, "GET", "/v1/commands", "Connection: close")
    with socket.create_connection((srv.host, srv.port), timeout=30) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.count(b"HTTP/1.1 200") == 2, received  # /health and /v1/commands, not /v1/models
    assert b'"object": "list"' not in received


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_half_closes_still_gets_its_answer(srv, stream):
    body = json.dumps({"messages": HELLO, "max_tokens": 30, "temperature": 0, "stream": stream}).encode()
    r = exchange(
        srv, head(srv, "POST", "/v1/chat/completions", "Content-Type: application/json", body=body), half_close=True
    )
    assert r.status == 200
    if stream:
        assert events(r.body.decode())[-1] == "[DONE]"
    else:
        assert json.loads(r.body)["usage"]["completion_tokens"] == 30


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"POST /v1/commands HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400),
        (
            b"POST /v1/commands HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}",
            400,
        ),
        (
            b"POST /v1/commands HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            411,
        ),
        (b"POST /v1/commands HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: +2\r\n\r\n{}", 400),
        (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", 431),
        (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: " + b"b" * 70_000 + b"\r\n\r\n", 431),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
        ("GET /caf\u00e9 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode(), 400),
        (b"GET /\x01 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400),
        (b"GET http://127.0.0.1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET /\r\n", 505),  # HTTP/0.9
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET / HTTP/1.x\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 garbage\r\n\r\n", 400),  # TLS to a plain-HTTP port
        (b"BREW /pot HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 405),
    ],
)
def test_broken_framing_gets_a_clear_status(srv, data, status):
    r = exchange(srv, data)
    body = json.loads(r.body)
    assert_openai_error(r.status, body, status)
    assert srv.request("GET", "/health")[0] == 200


def test_an_unexpected_exception_is_a_500_without_a_traceback(srv, monkeypatch, capsys):
    from edge.serve.server import Handler

    def broken(self):
        raise RuntimeError("a bug with a secret path /home/x")

    monkeypatch.setattr(Handler, "_models", broken)
    status, _, body = srv.request("GET", "/v1/models")
    assert_openai_error(status, body, 500)
    assert "Traceback" not in json.dumps(body) and "/home/x" not in json.dumps(body)
    assert "Traceback" in capsys.readouterr().err  # the server's log has it
    monkeypatch.undo()
    assert srv.request("GET", "/v1/models")[0] == 200


def test_edge_run_serve_outlives_clients_that_hang_up(tiny_bundle):
    """The real process: SIGPIPE's default action once ended it (exit 141) when a client left early."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "--serve", "--model", str(tiny_bundle("llama", "fp32")), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        line = proc.stderr.readline()
        assert "serving" in line, line + proc.stderr.read()
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        host, port = line.split("http://")[1].split("/")[0].rsplit(":", 1)
        page = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        for i in range(30):
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                if i % 3 == 0:  # leave with a reset rather than a close
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                sock.sendall(page * 4 if i % 3 == 1 else page)  # then leave without reading the answer
            if i % 3 == 2:  # a POST cut short
                with socket.create_connection((host, int(port)), timeout=10) as sock:
                    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 999\r\n\r\n{")
        time.sleep(0.5)
        assert proc.poll() is None, f"the server died: exit {proc.returncode}"
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("GET", "/health")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        proc.terminate()
        proc.wait(30)


# --- GET /v1/events: what happened, live, for every page -------------------------------------------


class Subscription:
    """An open ``GET /v1/events`` stream, read an event at a time."""

    def __init__(self, running: Running, *headers: str):
        self.sock = socket.create_connection((running.host, running.port), timeout=30)
        self.sock.sendall(head(running, "GET", "/v1/events", *headers))
        self.response = http.client.HTTPResponse(self.sock)
        self.response.begin()

    def next(self) -> dict | None:
        """The next event's data (comments and ``retry:`` skipped); None when the stream ended."""
        data = None
        while line := self.response.fp.readline():
            line = line.decode().rstrip("\n")
            if line.startswith("data: "):
                data = json.loads(line[len("data: ") :])
            elif line == "" and data is not None:
                return data
        return None

    def close(self) -> None:
        self.response.close()
        self.sock.close()


def test_a_subscriber_sees_the_commands_another_client_posts(srv):
    hub = srv.server.app.events
    first, second = Subscription(srv), Subscription(srv)
    try:
        assert first.response.status == 200 and first.response.getheader("Content-Type") == "text/event-stream"
        wait_for(lambda: hub.subscribers == 2, 10)
        status, _, command = srv.request("POST", "/v1/commands", {"text": "turn on the kitchen light"})
        assert status == 200
        for sub in (first, second):
            event = sub.next()
            assert event["event"] == "command" and event["source"] == "http", event
            assert {k: event[k] for k in command} == command
            assert isinstance(event["id"], int) and event["time"] > 0
    finally:
        first.close()
        second.close()
    wait_for(lambda: hub.subscribers == 0, 10)


def test_event_streams_pass_the_host_origin_and_api_key_checks(srv, keyed):
    for extra, status in (
        (f"Host: evil.example:{srv.port}", 421),
        ("Origin: http://evil.example", 403),
        (f"Origin: http://127.0.0.1:{srv.port}", 200),
    ):
        lines = ["GET /v1/events HTTP/1.1", extra if extra.startswith("Host") else f"Host: 127.0.0.1:{srv.port}"]
        if not extra.startswith("Host"):
            lines.append(extra)
        with socket.create_connection((srv.host, srv.port), timeout=30) as sock:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            assert sock.recv(64).startswith(b"HTTP/1.1 %d" % status), extra
    for auth, status in (
        ("X-None: 1", 401),
        ("Authorization: Bearer wrong", 401),
        ("Authorization: Bearer s3cret key", 200),
    ):
        sub = Subscription(keyed, auth)
        assert sub.response.status == status, auth
        sub.close()
    wait_for(lambda: srv.server.app.events.subscribers == 0 and keyed.server.app.events.subscribers == 0, 10)


def test_a_subscriber_that_leaves_is_cleaned_up_and_threads_return_to_baseline(models):
    running = start(models[0], max_subscribers=2)
    hub = running.server.app.events
    try:
        baseline = threading.active_count()
        subs = [Subscription(running), Subscription(running)]
        wait_for(lambda: hub.subscribers == 2, 10)
        status, _, body = running.request("GET", "/v1/events")  # over the cap: refused, not queued
        assert_openai_error(status, body, 503, "busy")
        for sub in subs:
            sub.close()
        wait_for(lambda: hub.subscribers == 0 and running.server.connections == 0, 10)
        wait_for(lambda: threading.active_count() <= baseline, 10)
        sub = Subscription(running)  # the places are free again
        assert sub.response.status == 200
        sub.close()
    finally:
        running.close()


def test_an_event_stream_outlives_the_idle_timeout_but_ends_at_shutdown(models):
    running = start(models[0], idle_timeout_s=0.3, header_timeout_s=0.3, heartbeat_s=0.2)
    sub = Subscription(running)
    try:
        time.sleep(1.0)  # past every connection deadline
        running.server.app.events.publish({"event": "wake", "t": 1.0})
        assert sub.next()["event"] == "wake"
        running.close()
        assert sub.next() is None  # shutdown ended the stream
    finally:
        sub.close()


def test_a_slow_subscriber_is_dropped_without_holding_up_publishers():
    from edge.serve.events import EventHub

    hub = EventHub(max_subscribers=2, backlog=4)
    slow, reader = hub.subscribe(), hub.subscribe()
    began = time.monotonic()
    for i in range(10):
        hub.publish({"event": "command", "n": i})
        assert reader.get(0.1)["n"] == i
    assert time.monotonic() - began < 1.0
    assert slow.closed.is_set() and slow.dropped and slow.get(0.01) is None
    assert hub.subscribers == 1 and hub.dropped == 1
    hub.close()
    assert reader.closed.is_set() and hub.subscribe() is None


def test_edge_run_serve_assistant_publishes_the_voice_on_the_event_stream(
    tiny_bundle, whisper_bundle, tmp_path, monkeypatch
):
    """The wiring of ``edge-run --serve --assistant``: the loop starts beside the server over the microphone (here
    a recording) and its events reach a subscriber (the server made as make_server makes it, on a free port)."""
    import importlib.util
    import shutil

    import edge.assistant
    import edge.cli
    import edge.serve.server
    from edge.bundle import open_bundle

    if importlib.util.find_spec("pymicro_wakeword") is None or shutil.which("espeak-ng") is None:
        pytest.skip("needs pymicro-wakeword (pip install 'edge[assistant]') and espeak-ng")
    whisper = whisper_bundle("int8")
    if open_bundle(whisper).vad_path is None:
        pytest.skip("the speech bundle has no vad.onnx (pip install --no-deps silero-vad)")
    from benchmarks.assistant import espeak, silence, write_wav

    wav = write_wav(tmp_path / "session.wav", np.concatenate([silence(0.5), espeak("okay nabu"), silence(3.0)]))
    seen = []

    def serve(model, command_set, recognizer, *, host, port, beside=None, **options):
        server = make_server(model, command_set, recognizer, host="127.0.0.1", port=0, log=False, **options)
        sub = server.app.events.subscribe()
        try:
            beside(server)
            seen.append(sub.get(60))
        finally:
            server.server_close()

    monkeypatch.setattr(edge.serve.server, "serve", serve)
    monkeypatch.setattr(edge.assistant, "microphone_blocks", lambda *_: edge.assistant.file_blocks(wav))  # the mic
    args = ["--serve", "--assistant", "--no-speak", "--model", str(tiny_bundle("llama", "fp32"))]
    assert edge.cli.main([*args, "--asr-model", str(whisper), "--commands", str(PANEL)]) == 0
    assert seen and seen[0]["event"] == "wake" and seen[0]["source"] == "voice", seen
