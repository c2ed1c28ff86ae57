"""``edge-run --serve``: an OpenAI-compatible HTTP API and the appliance panel page, from one process.

One model per process. HTTP requests are handled on threads of the standard library's
``ThreadingHTTPServer`` (no dependency; ``python -m benchmarks server --stacks`` measured it against
uvicorn + starlette: 7 vs 88 ms to import, 20 vs 31 MB serving; see benchmarks/README.md),
but every model call runs on a single worker thread, in order: a small board has the cores for one
generation at a time. Requests wait in a bounded queue (full: 429); each has a deadline covering
its wait and its work (past it: 504); a request whose client goes away is cancelled between tokens.

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/completions`` (``stream: true`` as server-sent
events), ``GET /v1/models``, ``GET|POST /v1/commands`` (the command set; a request as
``{"text": ...}`` or an ``audio/wav`` body -> one command), ``GET /health``, and the panel at ``/``.
"""

from __future__ import annotations

import ipaddress
import json
import queue
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .api import ApiError, Reply, TextRequest, chat_request, completion_request, finish_reason, models_list
from .errors import EdgeError
from .worker import DONE, POLL_S, Job, Worker

if TYPE_CHECKING:
    from .command_model import CommandModel
    from .commands import CommandSet
    from .model import TextModel
    from .transcribe import SpeechRecognizer

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
QUEUE_SIZE = 8  # requests waiting behind the one running; more get 429 at once instead of a long wait
TIMEOUT_S = 120.0  # from arrival to the last byte of the answer
MAX_BODY_BYTES = 8 << 20  # a 30 s stereo 48 kHz 16-bit WAV is 5.8 MB
MAX_AUDIO_S = 30.0  # a spoken command, not a recording
MAX_COMMAND_CHARS = 4096  # as edge-run --commands cuts a piped line
LINGER_S = 2.0
PANEL_DIR = Path(__file__).resolve().parent / "panel"
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css"}
WAV_TYPES = ("audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave")


@dataclass
class App:
    """What a server serves: the loaded models and its limits."""

    text_model: TextModel
    command_model: CommandModel | None
    recognizer: SpeechRecognizer | None
    worker: Worker
    timeout_s: float
    max_body: int
    log: bool
    started: int

    @property
    def model_id(self) -> str:
        return self.text_model.bundle.path.name


class PanelServer(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client never holds up shutdown
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], app: App):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        super().__init__(address, Handler)

    def server_close(self) -> None:
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
    gone = False

    # --- plumbing ----------------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.app.log:
            super().log_message(format, *args)

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
        headers = {"Retry-After": "1"} if e.status == 429 else None
        self._send(e.status, json.dumps(e.body()).encode(), "application/json", headers)

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise ApiError(
                411, "send the body with a Content-Length; chunked uploads are not accepted", code="length_required"
            )
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise ApiError(400, "bad Content-Length header")
        limit = self.server.app.max_body
        if length > limit:
            self.close_connection = True  # the body is not read: this connection cannot carry another request
            raise ApiError(
                413, f"the request body is {length} bytes, over the server's limit of {limit}", code="request_too_large"
            )
        self._body_read = True
        return self.rfile.read(length)

    def _linger(self) -> None:
        """Discard the unread body for a moment before closing, as web servers do: closing a socket with
        unread data resets the connection, and the client would lose the error sent just before."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(LINGER_S)
            end, budget = time.monotonic() + LINGER_S, 4 * self.server.app.max_body
            while time.monotonic() < end and budget > 0 and (data := self.connection.recv(1 << 16)):
                budget -= len(data)
        except OSError:
            pass

    def _json_body(self) -> Any:
        try:
            return json.loads(self._body())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ApiError(400, f"the request body is not valid JSON: {e}", code="invalid_json") from None

    def _client_gone(self) -> bool:
        """True when the client closed its end: the socket reads as end-of-file."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
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
                if time.monotonic() - checked > POLL_S or event is None:
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
        self._route({"/health": self._health, "/v1/models": self._models, "/v1/commands": self._command_set})

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
        self._body_read = False
        self.gone = False  # the client closed its end (not the same as asking to close after this response)
        try:
            if path in routes:
                routes[path]()
            elif self.command == "GET" and self._static(path):
                pass
            else:
                raise ApiError(404, f"unknown request URL: {self.command} {path}", code="unknown_url")
        except ApiError as e:
            unread = not self._body_read and self.headers.get("Content-Length", "0") != "0"
            if unread:
                self.close_connection = True  # its unread body would be taken for the next request
            self._error(e)
            if unread:
                self._linger()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True

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
        from .generate import GenerationStats

        stats = GenerationStats()

        def work() -> Iterator[str]:
            text = model.chat_text(req.messages) if chat else req.prompt
            ids = model.encode_prompt(text, req.max_tokens)
            yield from model.stream_ids(
                ids, max_new_tokens=req.max_tokens, sampling=req.sampling, stop=req.stop, stats=stats
            )

        reply = Reply(app.model_id, chat)
        events = self._events(Job(work, app.timeout_s))
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
                from .audio import SAMPLE_RATE, decode_audio

                audio = decode_audio(wav, "the request body")
                if len(audio) > MAX_AUDIO_S * SAMPLE_RATE:
                    raise ApiError(
                        400,
                        f"the audio is {len(audio) / SAMPLE_RATE:.1f} s; a command is at most {MAX_AUDIO_S:.0f} s",
                        param="audio",
                    )
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
        result = next(self._events(Job(work, app.timeout_s)), None)
        if result is not None:
            self._json(result)


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


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(
    text_model: TextModel,
    command_set: CommandSet | None = None,
    recognizer: SpeechRecognizer | None = None,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    queue_size: int = QUEUE_SIZE,
    timeout_s: float = TIMEOUT_S,
    max_body: int = MAX_BODY_BYTES,
    log: bool = True,
) -> PanelServer:
    """A bound, not yet serving, server (``port=0`` picks a free port: ``server.server_address``)."""
    command_model = None
    if command_set is not None:
        from .command_model import CommandModel

        # its own KV cache: the command instructions stay prefilled while chats run in between
        command_model = CommandModel(text_model.fork(), command_set)
    app = App(text_model, command_model, recognizer, Worker(queue_size), timeout_s, max_body, log, int(time.time()))
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
    **options: Any,
) -> None:
    """Serve until interrupted; ``options`` as :func:`make_server`."""
    if not is_loopback(host):
        print(
            f"edge-run: warning: listening on {host}, not loopback: anyone who can reach it can use the model "
            "and the panel (there is no authentication)",
            file=sys.stderr,
        )
    server = make_server(text_model, command_set, recognizer, host=host, port=port, **options)
    shown = f"[{host}]" if ":" in host else host
    what = f"{server.app.model_id}" + (f" and the command set {command_set.name}" if command_set else "")
    print(
        f"edge-run: serving {what} on http://{shown}:{server.server_address[1]}/ (panel at /, API at /v1)",
        file=sys.stderr,
    )
    # a service manager stops with SIGTERM, and a shell that starts us in the background ignores
    # SIGINT: both end the same orderly way as Ctrl-C
    if threading.current_thread() is threading.main_thread():  # only the main thread may set handlers
        signal.signal(signal.SIGTERM, _interrupt)
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            signal.signal(signal.SIGINT, _interrupt)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
