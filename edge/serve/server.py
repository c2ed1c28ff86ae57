"""``edge-run --serve``: an OpenAI-compatible HTTP API and the appliance panel page, from one process.

One model per process. HTTP requests are handled on threads of the standard library's
``ThreadingHTTPServer`` (no dependency; ``python -m benchmarks server --stacks`` measured it against
uvicorn + starlette: 7 vs 88 ms to import, 20 vs 31 MB serving; see benchmarks/README.md),
but every model call runs on a single worker thread, in order: a small board has the cores for one
generation at a time. Requests wait in a bounded queue (full: 429); each has a deadline covering
its wait and its work (past it: 504); a request whose client goes away is cancelled between tokens.

Every request passes :mod:`edge.serve.http_checks` first (the ``Host`` and ``Origin`` it came with, the API key,
the body's framing) and every connection is bounded: a deadline for its request head and body, an idle
keep-alive timeout, and a cap on connections at once. Any failure is an answer in OpenAI's error shape,
never a traceback on the wire or a dead server.

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/completions`` (``stream: true`` as server-sent
events), ``GET /v1/models``, ``GET|POST /v1/commands`` (the command set; a request as
``{"text": ...}`` or an ``audio/wav`` body -> one command), ``GET /v1/events`` (every command mapped, and
the events of an assistant in the same process, as server-sent events: see :mod:`edge.serve.events`),
``GET /health``, and the panel at ``/``.
"""

from __future__ import annotations

import contextlib
import json
import queue
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.errors import EdgeError
from edge.serve.api import ApiError, Reply, TextRequest, chat_request, completion_request, finish_reason, models_list
from edge.serve.events import MAX_SUBSCRIBERS, EventHub
from edge.serve.http_checks import Access, content_length, read_json
from edge.serve.worker import DONE, POLL_S, Job, Worker

if TYPE_CHECKING:
    from edge.commands.command_model import CommandModel
    from edge.commands.command_set import CommandSet
    from edge.speech.transcribe import SpeechRecognizer
    from edge.text.model import TextModel

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
QUEUE_SIZE = 8  # requests waiting behind the one running; more get 429 at once instead of a long wait
TIMEOUT_S = 120.0  # from arrival to the last byte of the answer
MAX_BODY_BYTES = 8 << 20  # a 30 s stereo 48 kHz 16-bit WAV is 5.8 MB
MAX_AUDIO_S = 30.0  # a spoken command, not a recording
MAX_COMMAND_CHARS = 4096  # as edge-run --commands cuts a piped line
LINGER_S = 2.0
HEADER_TIMEOUT_S = 10.0  # from a request's first byte to the end of its headers (slow senders, slowloris)
BODY_TIMEOUT_S = 60.0  # for a body: 8 MB at about 1 Mbit/s
IDLE_TIMEOUT_S = 15.0  # a kept-alive connection waiting for its next request
MAX_CONNECTIONS = 64  # at once; each holds a thread: more get 503 and are closed
REAP_S = 0.1  # how often deadlines are checked
HEARTBEAT_S = 15.0  # an event stream sends a comment this often: proxies keep it open, a dead client shows
STREAM_POLL_S = 0.25  # how often an event stream checks for its client leaving and for shutdown
PANEL_DIR = Path(__file__).resolve().parent / "panel"
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css"}
WAV_TYPES = ("audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave")
TOO_MANY_CONNECTIONS = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
)


@dataclass
class Limits:
    """How long and how many: each bound keeps a slow or hostile client from holding the server."""

    timeout_s: float = TIMEOUT_S
    max_body: int = MAX_BODY_BYTES
    header_timeout_s: float = HEADER_TIMEOUT_S
    body_timeout_s: float = BODY_TIMEOUT_S
    idle_timeout_s: float = IDLE_TIMEOUT_S
    max_connections: int = MAX_CONNECTIONS
    max_subscribers: int = MAX_SUBSCRIBERS  # open event streams (GET /v1/events); each holds a connection
    heartbeat_s: float = HEARTBEAT_S


@dataclass
class App:
    """What a server serves: the loaded models, who may use them, and its limits."""

    text_model: TextModel
    command_model: CommandModel | None
    recognizer: SpeechRecognizer | None
    worker: Worker
    access: Access
    limits: Limits
    log: bool
    started: int
    events: EventHub = field(default_factory=EventHub)  # what GET /v1/events streams

    @property
    def model_id(self) -> str:
        return self.text_model.bundle.path.name


class PanelServer(ThreadingHTTPServer):
    """A thread per connection, at most ``limits.max_connections`` at once, and one thread that cuts
    off any connection past its deadline."""

    daemon_threads = True  # a stuck client never holds up shutdown
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], app: App):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        self.connections = 0
        self.lock = threading.Lock()
        self.deadlines: dict[Handler, float] = {}
        self.closed = threading.Event()
        super().__init__(address, Handler)
        app.access.port = self.server_address[1]  # the port picked, for the Origin check
        threading.Thread(target=self._reap, name="edge-deadlines", daemon=True).start()

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        with self.lock:
            full = self.connections >= self.app.limits.max_connections
            if not full:
                self.connections += 1
        if not full:
            super().process_request(request, client_address)
            return
        self.app.worker.counts["too_many_connections"] += 1
        body = json.dumps(
            ApiError(503, "the server has too many connections open; retry shortly", "server_error", code="busy").body()
        ).encode()
        try:
            request.setblocking(False)  # a new socket's send buffer has room: this never stalls the accept loop
            request.send(TOO_MANY_CONNECTIONS % (len(body), body))
        except OSError:
            pass
        self.shutdown_request(request)

    def process_request_thread(self, request: socket.socket, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.lock:
                self.connections -= 1

    def watch(self, handler: Handler, seconds: float) -> None:
        """Cut ``handler``'s connection if it is still being watched ``seconds`` from now."""
        with self.lock:
            self.deadlines[handler] = time.monotonic() + seconds

    def unwatch(self, handler: Handler) -> None:
        with self.lock:
            self.deadlines.pop(handler, None)

    def _reap(self) -> None:
        # one thread for every deadline: a socket timeout alone restarts with each byte, so a client
        # sending one byte every few seconds would never hit it
        while not self.closed.wait(REAP_S):
            now = time.monotonic()
            with self.lock:
                late = [h for h, deadline in self.deadlines.items() if deadline < now]
                for h in late:
                    del self.deadlines[h]
            for h in late:
                h.cut()

    def server_close(self) -> None:
        self.closed.set()
        self.app.events.close()  # ends every event stream, and an assistant running beside the server
        super().server_close()
        self.app.worker.stop()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and chunked streams
    server_version = "edge"
    timeout = 60  # socket timeout: a client that stops reading cannot hold a thread forever
    # headers and body go out as separate writes: with Nagle's algorithm on, each response after the
    # first on a keep-alive connection waits out the client's delayed ACK (40 ms)
    disable_nagle_algorithm = True
    server: PanelServer
    gone = False  # the client closed its end (not the same as asking to close after this response)
    timed_out = False  # the deadline thread cut this connection off
    started = False  # the final status line is sent: an error now can only close the connection
    interim_sent = False  # a "100 Continue" went out while the answer was being made
    unread = 0  # bytes of the request's declared body not read yet

    # --- one request, from its first byte to its answer -------------------------------------------

    def handle_one_request(self) -> None:
        """Read, check and answer one request; every failure becomes an OpenAI-shaped error, and the
        connection closes wherever what follows on it could be misread."""
        self.gone = self.timed_out = self.started = self.interim_sent = False
        self.unread = 0
        if not self._wait_for_request():
            self.close_connection = True
            return
        limits = self.server.app.limits
        self.server.watch(self, limits.header_timeout_s)
        try:
            self.raw_requestline = self.rfile.readline(65537)
            self.requestline, self.command, self.request_version = "", "", "HTTP/1.1"  # for an error's reply
            if len(self.raw_requestline) > 65536:
                self.send_error(414, "the request line is over 64 KB")
                return
            words = self.raw_requestline.split()
            if len(words) == 2 and words[0] == b"GET":  # HTTP/0.9 has no headers to wait for
                self.send_error(505, "HTTP/0.9 is not supported: send HTTP/1.1 (or 1.0) with headers")
                return
            if not self.parse_request():
                return  # answered by send_error
        except OSError:  # reset, or the socket timeout on a read
            self.close_connection = True
            return
        finally:
            self.server.unwatch(self)
        if self.timed_out:  # cut off mid-headers: what arrived is not the whole request
            self.send_error(408)
            return
        try:
            self._check_request()
            method = getattr(self, "do_" + self.command, None)
            if method is None:
                raise ApiError(405, f"method {self.command} is not allowed: use GET or POST", code="method_not_allowed")
            method()
        except ApiError as e:
            self._fail(e)
        except OSError:  # the client reset, or stopped reading past the socket timeout
            self.close_connection = True
        except Exception:  # a bug: the log gets the traceback, the client a plain 500, the server goes on
            traceback.print_exc()
            self._fail(ApiError(500, "internal error; the server log has the details", "server_error"))

    def _wait_for_request(self) -> bool:
        """Wait for the next request's first byte, up to the idle timeout; False when the client closed
        the connection or stayed silent."""
        self.connection.settimeout(self.server.app.limits.idle_timeout_s)
        try:
            return bool(self.rfile.peek(1))
        except OSError:
            return False
        finally:
            self.connection.settimeout(self.timeout)

    def _check_request(self) -> None:
        """The checks every request passes before its endpoint runs: path, body framing, access."""
        # framing first: once it is in doubt, the connection must close after the answer
        try:
            self.unread = content_length(self.headers)
        except ApiError:
            self.close_connection = True
            raise
        if not self.path.startswith("/") or not self.path.isascii() or not self.path.isprintable():
            raise ApiError(400, "the request path must be plain ASCII starting with /", code="bad_path")
        self.server.app.access.check(self.headers, self.path, self.request_version == "HTTP/1.1")

    def cut(self) -> None:
        """Called by the deadline thread: end the reads of this connection; the handler answers 408."""
        self.timed_out = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RD)

    def _fail(self, e: ApiError) -> None:
        if self.started:  # an error after the status line cannot be sent: end the response
            self.close_connection = True
            return
        unread = self.unread > 0
        if unread:
            self.close_connection = True  # its unread body would be taken for the next request
        try:
            self._error(e)
        except OSError:
            self.close_connection = True
            return
        if unread:
            self._linger()

    # --- plumbing ----------------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.app.log:
            super().log_message(format, *args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors of the standard library's request parsing (bad request line, version, headers), in
        OpenAI's shape; the connection closes, as the request was not understood."""
        if self.timed_out:
            code = 408
            message = f"the request did not arrive within {self.server.app.limits.header_timeout_s:g} s"
        if self.request_version == "HTTP/0.9":  # not known yet: answer with a status line all the same
            self.request_version = "HTTP/1.1"
        self.close_connection = True
        with contextlib.suppress(OSError):
            self._error(ApiError(code, message or HTTPStatus(code).phrase, code="bad_request"))
        self._linger()  # the rest of what was sent is unread

    def send_response(self, code: int, message: str | None = None) -> None:
        self.started = True
        super().send_response(code, message)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj: Any, status: int = 200) -> None:
        self._send(status, json.dumps(obj, ensure_ascii=False).encode(), "application/json")

    def _error(self, e: ApiError) -> None:
        headers = {"Retry-After": "1"} if e.status in (429, 503) else None
        if e.status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        self._send(e.status, json.dumps(e.body()).encode(), "application/json", headers)

    def _body(self) -> bytes:
        """The request's declared body, read within the body deadline (413 over the size limit)."""
        length, limit = self.unread, self.server.app.limits.max_body
        if length > limit:  # not read: the error goes out first, and the connection closes
            raise ApiError(
                413, f"the request body is {length} bytes, over the server's limit of {limit}", code="request_too_large"
            )
        self.server.watch(self, self.server.app.limits.body_timeout_s)
        try:
            data = self.rfile.read(length)
        finally:
            self.server.unwatch(self)
        self.unread = 0
        if len(data) < length:  # cut off by the deadline, or the client stopped sending
            self.close_connection = True
            if self.timed_out:
                raise ApiError(408, f"the body did not arrive within {self.server.app.limits.body_timeout_s:g} s")
            raise ApiError(400, f"the body ended after {len(data)} of its {length} bytes")
        return data

    def _linger(self) -> None:
        """Discard the unread body for a moment before closing, as web servers do: closing a socket with
        unread data resets the connection, and the client would lose the error sent just before."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(LINGER_S)
            end, budget = time.monotonic() + LINGER_S, 4 * self.server.app.limits.max_body
            while time.monotonic() < end and budget > 0 and (data := self.connection.recv(1 << 16)):
                budget -= len(data)
        except OSError:
            pass

    def _json_body(self) -> Any:
        if self.headers.get_content_type() != "application/json":
            # also what keeps a cross-site form or text/plain POST from ever running
            raise ApiError(
                415,
                "send the request body as JSON with 'Content-Type: application/json'",
                code="unsupported_media_type",
            )
        return read_json(self._body())

    def _client_gone(self) -> bool:
        """True once the client has closed its connection.

        End-of-file alone does not say so: a client that half-closes (``shutdown(SHUT_WR)`` after its
        request) still reads the answer. So at end-of-file an HTTP/1.1 client that has no answer yet is
        sent an interim ``100 Continue``, which clients skip; a closed socket answers it with a reset,
        which a later check reads as gone (a stream's own writes probe the same way). HTTP/1.0 has no interim
        responses: there, end-of-file counts as gone.
        """
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable or self.connection.recv(1, socket.MSG_PEEK) != b"":
                return False
            if self.request_version != "HTTP/1.1":
                return True
            if self.connection.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                return True  # what was sent since end-of-file met a reset (Linux reports it here, not on recv)
            if not self.started and not self.interim_sent:
                self.interim_sent = True
                self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return False
        except OSError:
            return True

    def _events(self, job: Job) -> Iterator[Any]:
        """What ``job`` produces, as it comes; cancels it when the client goes or the reader stops early."""
        try:
            self.server.app.worker.submit(job)
            checked = time.monotonic()
            while True:
                try:
                    event = job.events.get(timeout=POLL_S)
                except queue.Empty:
                    event = None
                # after a probe (see _client_gone) every event checks: the reset comes within a round trip
                if self.interim_sent or time.monotonic() - checked > POLL_S or event is None:
                    if self._client_gone():
                        self.gone = self.close_connection = True
                        return
                    checked = time.monotonic()
                if event is None:
                    continue
                if event is DONE:
                    return
                if isinstance(event, ApiError):
                    raise event
                yield event
        finally:
            job.cancelled.set()

    # --- routing -----------------------------------------------------------------------------------

    def do_GET(self) -> None:
        if self.unread:
            self._body()  # a GET's body means nothing here, but left unread it would be taken for a request
        self._route(
            {
                "/health": self._health,
                "/v1/models": self._models,
                "/v1/commands": self._command_set,
                "/v1/events": self._event_stream,
            }
        )

    def do_POST(self) -> None:
        self._route(
            {
                "/v1/chat/completions": lambda: self._text(chat=True),
                "/v1/completions": lambda: self._text(chat=False),
                "/v1/commands": self._command,
            }
        )

    def _route(self, routes: dict[str, Callable[[], None]]) -> None:
        path = self.path.split("?", 1)[0]
        if path in routes:
            routes[path]()
        elif not (self.command == "GET" and self._static(path)):
            raise ApiError(404, f"unknown request URL: {self.command} {path}", code="unknown_url")

    def _static(self, path: str) -> bool:
        name = "index.html" if path == "/" else path.lstrip("/")
        file = PANEL_DIR / name
        # only the panel's own files: no subfolders, nothing outside it
        if "/" in name or file.suffix not in STATIC_TYPES or not file.is_file():
            return False
        self._send(200, file.read_bytes(), STATIC_TYPES[file.suffix], {"Cache-Control": "no-cache"})
        return True

    # --- endpoints ---------------------------------------------------------------------------------

    def _health(self) -> None:
        app = self.server.app
        self._json(
            {
                "status": "ok",
                "model": app.model_id,
                "commands": app.command_model.commands.name if app.command_model else None,
                "speech": app.recognizer is not None,
                "queued": app.worker.jobs.qsize(),
                "busy": app.worker.busy,
                "requests": dict(app.worker.counts),
            }
        )

    def _models(self) -> None:
        app = self.server.app
        self._json(models_list(app.model_id, app.started))

    def _text(self, chat: bool) -> None:
        app = self.server.app
        body = self._json_body()
        req = chat_request(body) if chat else completion_request(body)
        model = app.text_model
        from edge.text.generate import GenerationStats

        stats = GenerationStats()

        def work() -> Iterator[str]:
            text = model.chat_text(req.messages) if chat else req.prompt
            ids = model.encode_prompt(text, req.max_tokens)
            yield from model.stream_ids(
                ids, max_new_tokens=req.max_tokens, sampling=req.sampling, stop=req.stop, stats=stats
            )

        reply = Reply(app.model_id, chat)
        events = self._events(Job(work, app.limits.timeout_s))
        if req.stream:
            self._stream(events, reply, req, stats)
            return
        text = "".join(events)
        if self.gone:
            return
        self._json(reply.full(text, finish_reason(stats.finish_reason), stats.prompt_tokens, stats.new_tokens))

    def _stream(self, events: Iterator[str], reply: Reply, req: TextRequest, stats) -> None:
        """Server-sent events: a chunk per piece, the finish reason, usage if asked, then ``[DONE]``."""
        first = next(events, None)  # errors before the first token are plain HTTP errors
        if self.gone:
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            if reply.chat:
                self._sse(reply.chunk(None, first=True))
            try:
                if first is not None:
                    self._sse(reply.chunk(first))
                    for piece in events:
                        self._sse(reply.chunk(piece))
                if self.gone:
                    return
                self._sse(reply.chunk(None, finish_reason(stats.finish_reason)))
                if req.include_usage:
                    self._sse(reply.usage_chunk(stats.prompt_tokens, stats.new_tokens))
            except ApiError as e:  # the status line is sent: a timeout mid-stream is an error event
                self._sse(e.body())
            self._chunk(b"data: [DONE]\n\n")
            self._chunk(b"")
        except OSError:  # the client went away mid-stream: stop generating
            self.gone = self.close_connection = True
            if hasattr(events, "close"):
                events.close()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _sse(self, obj: Any) -> None:
        self._chunk(b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n")

    def _command_set(self) -> None:
        app = self.server.app
        if app.command_model is None:
            raise _no_command_set()
        self._json(command_set_json(app.command_model.commands) | {"speech": app.recognizer is not None})

    def _command(self) -> None:
        app = self.server.app
        if app.command_model is None:
            raise _no_command_set()
        parser, recognizer = app.command_model, app.recognizer
        if self.headers.get_content_type() in WAV_TYPES:
            if recognizer is None:
                raise ApiError(
                    400,
                    "this server has no speech model, so it takes commands as text only; "
                    "start it with --asr-model BUNDLE for audio",
                    code="no_speech_model",
                )
            wav = self._body()

            def work() -> Iterator[dict]:
                from edge.speech.audio import decode_audio

                # the bounded reader stops at the limit: a longer upload is never decoded or resampled whole
                audio = decode_audio(wav, "the request body", max_seconds=MAX_AUDIO_S)
                heard = recognizer.transcribe(audio).text
                yield parser.parse(heard).command | {"transcript": heard}

        elif self.headers.get_content_type() == "application/json":
            body = self._json_body()
            text = body.get("text") if isinstance(body, dict) else None
            if not isinstance(text, str):
                raise ApiError(
                    400, 'send {"text": "..."} as JSON, or a WAV body as audio/wav', param="text", code="invalid_value"
                )

            def work() -> Iterator[dict]:
                yield parser.parse(text[:MAX_COMMAND_CHARS]).command

        else:
            raise ApiError(
                415, 'send a command as application/json ({"text": ...}) or audio/wav', code="unsupported_media_type"
            )
        result = next(self._events(Job(work, app.limits.timeout_s)), None)
        if result is not None:
            origin = {"event": "command", "source": "http"}
            client = self.headers.get("X-Edge-Client", "")
            if 0 < len(client) <= 64 and client.isascii() and client.isprintable():
                origin["client"] = client  # the panel page that asked skips its own event
            app.events.publish(origin | result)
            self._json(result)

    def _event_stream(self) -> None:
        """``GET /v1/events``: every event published (commands mapped here, an assistant's wake words,
        commands and answers) as server-sent events, until the client leaves or the server stops.

        The stream is not under the request deadlines (those end with the request's head) nor the idle
        timeout (that is between requests); it ends when the client closes its side, when it falls
        :data:`edge.serve.events.BACKLOG` events behind, or at shutdown. The response is delimited by the
        connection's close, so it works for HTTP/1.0 clients too.
        """
        app = self.server.app
        sub = app.events.subscribe()
        if sub is None:
            raise ApiError(
                503,
                f"{app.events.max_subscribers} event streams are already open; retry shortly",
                "server_error",
                code="busy",
            )
        self.close_connection = True
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"retry: 2000\n\n")  # EventSource reconnects after 2 s
            self.wfile.flush()
            beat = time.monotonic()
            while not sub.closed.is_set():
                event = sub.get(STREAM_POLL_S)
                if event is not None:
                    data = json.dumps(event, ensure_ascii=False).encode()
                    self.wfile.write(b"event: %s\ndata: %s\n\n" % (event["event"].encode(), data))
                elif self._stream_client_gone():
                    break
                elif time.monotonic() - beat >= app.limits.heartbeat_s:
                    self.wfile.write(b": keep-alive\n\n")
                else:
                    continue
                self.wfile.flush()
                beat = time.monotonic()
        except OSError:  # the client went away mid-write
            pass
        finally:
            app.events.unsubscribe(sub)

    def _stream_client_gone(self) -> bool:
        """An event stream's client sends nothing after its request: readable end-of-file (or a reset) means
        it has gone. (Unlike :meth:`_client_gone`, a half-close counts as leaving: no answer is pending.)"""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True


def _no_command_set() -> ApiError:
    return ApiError(
        404,
        "this server has no command set; start it with edge-run --serve --commands FILE",
        code="no_command_set",
    )


def command_set_json(commands: CommandSet) -> dict[str, Any]:
    """The command set as the panel page reads it: each command's description and argument schemas."""
    return {
        "name": commands.name,
        "description": commands.description,
        "unknown": commands.unknown,
        "commands": {
            c.name: {"description": c.description, "args": {a.name: a.schema() for a in c.args}}
            for c in commands.commands.values()
        },
    }


def make_server(
    text_model: TextModel,
    command_set: CommandSet | None = None,
    recognizer: SpeechRecognizer | None = None,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    queue_size: int = QUEUE_SIZE,
    allow_hosts: tuple[str, ...] = (),
    api_key: str | None = None,
    log: bool = True,
    **limits: Any,
) -> PanelServer:
    """A bound, not yet serving, server (``port=0`` picks a free port: ``server.server_address``).

    ``allow_hosts``: host names it answers to besides its own addresses; ``api_key``: required on /v1;
    ``limits``: fields of :class:`Limits` (``timeout_s``, ``max_body``, ``header_timeout_s``, ...).
    """
    command_model = None
    if command_set is not None:
        from edge.commands.command_model import CommandModel

        # its own KV cache: the command instructions stay prefilled while chats run in between
        command_model = CommandModel(text_model.fork(), command_set)
    access = Access(host, port, tuple(allow_hosts), api_key or None)
    worker = Worker(queue_size)
    bounds = Limits(**limits)
    hub = EventHub(bounds.max_subscribers)
    app = App(text_model, command_model, recognizer, worker, access, bounds, log, int(time.time()), hub)
    try:
        return PanelServer((host, port), app)
    except OSError as e:
        app.worker.stop()
        raise EdgeError(
            f"cannot listen on {host}:{port}: {e.strerror}", "pick another --port, or stop what uses it"
        ) from None


def serve(
    text_model: TextModel,
    command_set: CommandSet | None = None,
    recognizer: SpeechRecognizer | None = None,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    beside: Callable[[PanelServer], Any] | None = None,
    **options: Any,
) -> None:
    """Serve until interrupted; ``beside(server)`` starts what runs along (the assistant, see
    :mod:`edge.assistant.beside_server`) once the server is bound; ``options`` as :func:`make_server`."""
    server = make_server(text_model, command_set, recognizer, host=host, port=port, **options)
    access = server.app.access
    if not access.loopback and access.api_key is None:
        print(
            f"edge-run: warning: listening on {host}, not loopback: anyone who can reach it can use the model "
            "and the panel (there is no authentication; set one with --api-key or EDGE_API_KEY)",
            file=sys.stderr,
        )
    shown = f"[{host}]" if ":" in host else host
    what = f"{server.app.model_id}" + (f" and the command set {command_set.name}" if command_set else "")
    key = ", API key required" if access.api_key else ""
    print(
        f"edge-run: serving {what} on http://{shown}:{server.server_address[1]}/ (panel at /, API at /v1{key})",
        file=sys.stderr,
    )
    # a service manager stops with SIGTERM, and a shell that starts us in the background ignores
    # SIGINT: both end the same orderly way as Ctrl-C
    if threading.current_thread() is threading.main_thread():  # only the main thread may set handlers
        signal.signal(signal.SIGTERM, _interrupt)
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            signal.signal(signal.SIGINT, _interrupt)
    try:
        if beside is not None:
            beside(server)
        server.serve_forever()
    finally:
        server.server_close()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
