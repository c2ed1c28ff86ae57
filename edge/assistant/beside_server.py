"""The assistant inside ``edge-run --serve --assistant``: one process, one model, a panel and a voice sharing one state.

>>> thread = start(server, Assistant(wake, vad, server.app.recognizer, server.app.command_model, Answerer(model)),
...                microphone_blocks())

The loop runs on a thread of its own, listening all the time (the wake-word model and the VAD are small
sessions of their own), but every call to Whisper, the command model or the text model goes through the
server's one worker thread (:meth:`edge.serve.worker.Worker.call`), in turn with the HTTP requests: a voice request
and a panel request never run at once, so the board's cores and the shared model weights serve one call at a
time, as for HTTP alone. A voice request waits for room in a full queue rather than being refused.

Each event goes to the server's :class:`edge.serve.events.EventHub` with ``"source": "voice"``, so every page
subscribed to ``GET /v1/events`` shows what was said; the loop ends when the server closes the hub.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.assistant.loop import Assistant
from edge.serve.api import ApiError

if TYPE_CHECKING:
    from edge.serve.server import PanelServer
    from edge.serve.worker import Worker

TIMEOUT_S = 60.0  # one model call of the assistant's, waiting in the queue included


class _OnWorker:
    """Calls made on the server's worker thread, waiting for their results."""

    def __init__(self, worker: Worker, timeout_s: float):
        self.worker = worker
        self.timeout_s = timeout_s

    def one(self, fn, *args) -> Any:
        (result,) = self.worker.call(lambda: iter([fn(*args)]), self.timeout_s)
        return result


class _Recognizer(_OnWorker):
    def __init__(self, recognizer, worker: Worker, timeout_s: float):
        super().__init__(worker, timeout_s)
        self.recognizer = recognizer

    def transcribe(self, audio: np.ndarray):
        return self.one(self.recognizer.transcribe, audio)


class _Commands(_OnWorker):
    def __init__(self, commands, worker: Worker, timeout_s: float):
        super().__init__(worker, timeout_s)
        self.model = commands
        self.commands = commands.commands  # the command set (the loop reads its ``unknown``)

    def parse(self, text: str):
        return self.one(self.model.parse, text)


class _Answerer(_OnWorker):
    def __init__(self, answerer, worker: Worker, timeout_s: float):
        super().__init__(worker, timeout_s)
        self.answerer = answerer

    def answer(self, question: str) -> Iterator[str]:
        # each sentence comes back as soon as the worker has generated it, to be spoken while the next is made
        yield from self.worker.call(lambda: self.answerer.answer(question), self.timeout_s)


def through_worker(assistant: Assistant, worker: Worker, timeout_s: float = TIMEOUT_S) -> Assistant:
    """``assistant`` with its recognizer, command model and answerer called on ``worker`` (changed in place)."""
    assistant.recognizer = _Recognizer(assistant.recognizer, worker, timeout_s)
    if assistant.commands is not None:
        assistant.commands = _Commands(assistant.commands, worker, timeout_s)
    if assistant.answerer is not None:
        assistant.answerer = _Answerer(assistant.answerer, worker, timeout_s)
    return assistant


def start(server: PanelServer, assistant: Assistant, blocks: Iterable[np.ndarray]) -> threading.Thread:
    """Run ``assistant`` over ``blocks`` beside ``server`` until the blocks end or the server closes."""
    hub = server.app.events
    through_worker(assistant, server.app.worker)

    def listening() -> Iterator[np.ndarray]:
        for block in blocks:
            if hub.closed.is_set():
                return
            yield block

    def run() -> None:
        stream = listening()
        try:
            while not hub.closed.is_set():
                try:
                    for event in assistant.run(stream):
                        hub.publish(event.as_dict() | {"source": "voice"})
                    return  # the audio ended (a recording) or the server is closing
                except ApiError as e:  # a model call timed out, or the server is stopping: listen again
                    if hub.closed.is_set() or e.status == 503:
                        return
                    hub.publish({"event": "error", "source": "voice", "message": e.message})
        except Exception:  # a bug: the log gets it, the server goes on serving HTTP
            traceback.print_exc()
        finally:
            stream.close()
            if hasattr(blocks, "close"):
                blocks.close()  # releases the microphone
            if assistant.voice is not None:
                assistant.voice.close()

    thread = threading.Thread(target=run, name="edge-assistant", daemon=True)
    thread.start()
    return thread
