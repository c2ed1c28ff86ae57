"""edge-run --serve under generated requests over raw sockets: methods, headers, framing and bodies, sent
whole, cut short, half-closed or too slowly. The server must stay up, answer every complete request with
a status line (never a 500), cut off slow senders at its deadlines, and give back its threads and memory.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is a dev dependency: pip install -e '.[dev]'")
psutil = pytest.importorskip("psutil", reason="psutil is a dev dependency: pip install -e '.[dev]'")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.test_server import PANEL, start, wait_for  # noqa: E402

DEADLINE_S = 0.3  # the server's header, body and idle deadlines here: slow senders are cut off quickly
MAX_BODY = 4096  # small, so that generated bodies go over it
STATUS_LINE = re.compile(rb"HTTP/1\.1 [1-5]\d\d ")
PATHS = ["/", "/health", "/v1/models", "/v1/commands", "/v1/chat/completions", "/v1/completions", "/panel.js"]
HEADER_NAMES = ["Connection", "Expect", "Authorization", "Accept", "X-Fuzz"]  # with junk values
printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
junk = st.text(st.characters(blacklist_characters="\r\n"), max_size=30)  # anything but a line break
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=False) | junk,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(junk, inner, max_size=4),
    max_leaves=12,
)
chat_bodies = st.fixed_dictionaries(
    {"messages": st.just([{"role": "user", "content": "Hello"}])},
    optional={"temperature": json_values, "stream": st.booleans(), "max_tokens": st.integers(-2, 4), "n": json_values},
)


@st.composite
def bodies(draw) -> bytes:
    kind = draw(st.sampled_from(["none", "json", "chat", "command", "bytes", "deep", "surrogate"]))
    if kind == "none":
        return b""
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "chat":
        return json.dumps({"max_tokens": 3} | draw(chat_bodies)).encode()  # short: the worker is shared
    if kind == "command":
        return json.dumps({"text": draw(junk)}).encode()
    if kind == "deep":
        depth = draw(st.sampled_from([63, 65, 2000, 50_000]))
        return b"[" * depth + b"]" * depth
    if kind == "surrogate":
        return b'{"text": "\\ud800 %s"}' % draw(printable).encode().replace(b"\\", b"").replace(b'"', b"")
    return draw(st.binary(max_size=300))


def mostly(usual, *others) -> st.SearchStrategy:
    """``usual`` two times in three, else one of ``others``: most requests get past the first check."""
    return st.sampled_from([usual] * 2 * len(others) + list(others))


@st.composite
def requests(draw) -> tuple[bytes, int]:
    """(the request's bytes, the length of its head): a mostly plausible request with generated parts."""
    method = draw(mostly("POST", "GET", "HEAD", "PUT", "OPTIONS", "%"))
    if method == "%":
        method = draw(printable.filter(str.strip))
    path = draw(st.sampled_from([*PATHS, *PATHS, "%"]))
    if path == "%":
        path = "/v1/" + draw(junk)
    version = draw(mostly("HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1", "http/1.1", ""))
    body = draw(bodies())
    headers = []
    host = draw(mostly("127.0.0.1", "localhost:8080", "evil.example", "[::1]", None))
    if host is not None:
        headers.append(f"Host: {host}")
    kind = draw(mostly("application/json", "text/plain", "audio/wav", None))
    if kind is not None:
        headers.append(f"Content-Type: {kind}")
    framing = draw(mostly("length", "none", "twice", "wrong", "chunked", "both"))
    if framing in ("length", "twice", "both") and body:
        headers.append(f"Content-Length: {len(body)}")
    if framing == "twice":
        headers.append(f"Content-Length: {len(body) + 1}")
    if framing == "wrong":
        headers.append("Content-Length: " + draw(printable))
    if framing in ("chunked", "both"):
        headers.append("Transfer-Encoding: chunked")
    origins = st.sampled_from(["http://127.0.0.1", "http://evil.example", "null"]) | junk
    headers += [f"Origin: {o}" for o in draw(st.lists(origins, max_size=1))]
    headers += [f"{draw(st.sampled_from(HEADER_NAMES))}: {v}" for v in draw(st.lists(junk, max_size=3))]
    headers += ["X-Many: 1"] * draw(st.sampled_from([0] * 20 + [99, 101, 500]))  # over 100: 431
    line = f"{method} {path} {version}".rstrip()
    head = (line + "\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n").encode("utf-8", "surrogatepass")
    return head + body, len(head)


def status_line(sock: socket.socket, seconds: float) -> bytes:
    """The first line the server sends, or what it sent before closing or going quiet for ``seconds``."""
    sock.settimeout(seconds)
    got = b""
    try:
        while b"\r\n" not in got and (chunk := sock.recv(4096)):
            got += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return got


@pytest.fixture(scope="module")
def fuzzed(tiny_bundle):
    import edge
    from edge.commands.command_set import CommandSet

    commands = CommandSet.from_file(PANEL) if PANEL.is_file() else None
    model = edge.load(tiny_bundle("llama", "fp32"))
    before = threading.active_count()
    running = start(
        model,
        command_set=commands,
        max_body=MAX_BODY,
        header_timeout_s=DEADLINE_S,
        body_timeout_s=DEADLINE_S,
        idle_timeout_s=DEADLINE_S,
        max_connections=16,
    )
    yield running, before
    running.close()


def test_generated_requests_never_bring_the_server_down(fuzzed):
    running, threads_before = fuzzed
    address = (running.host, running.port)
    rss: list[float] = []
    process = psutil.Process()
    outcomes: dict[str, int] = {}

    @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(request=requests(), ending=st.sampled_from(["whole", "whole", "half-close", "hang-up", "slow"]))
    def one(request: tuple[bytes, int], ending: str) -> None:
        data, head_length = request
        with socket.create_connection(address, timeout=10) as sock:
            if ending == "hang-up":  # leave partway, sometimes with a reset
                sock.sendall(data[: len(data) // 2])
                if len(data) % 2:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            elif ending == "slow":  # part of the head, then silence: cut off at the deadline
                sock.sendall(data[: head_length // 2])
                began = time.monotonic()
                answer = status_line(sock, 5)
                assert time.monotonic() - began < DEADLINE_S + 2, "a slow sender held its connection"
                assert answer == b"" or STATUS_LINE.match(answer), answer
            else:
                refused_unread = len(data) - head_length > MAX_BODY  # 413, then the unread rest resets
                try:
                    sock.sendall(data)
                    if ending == "half-close":
                        sock.shutdown(socket.SHUT_WR)
                except OSError:  # the reset came first: the 413 before it may be lost, as with any server
                    assert refused_unread, data[:300]
                    return
                answer = status_line(sock, 30)
                assert STATUS_LINE.match(answer) or (refused_unread and not answer), (data[:300], answer)
                if not answer:
                    return
                assert not answer.startswith(b"HTTP/1.1 500"), data[:300]
                outcomes[answer[9:12].decode()] = outcomes.get(answer[9:12].decode(), 0) + 1
        rss.append(process.memory_info().rss / 2**20)

    one()
    print("statuses:", dict(sorted(outcomes.items())))
    assert running.request("GET", "/health")[0] == 200
    assert len(outcomes) >= 5, outcomes  # the generator reaches many different answers
    # every connection ends (deadlines, idle timeout) and gives its thread back
    wait_for(lambda: threading.active_count() <= threads_before + 3, 20)  # serve loop, worker, deadline thread
    warm = rss[len(rss) // 5]
    assert max(rss[len(rss) // 5 :]) - warm < 40, (warm, max(rss))
    assert rss[-1] - warm < 25, (warm, rss[-1])
