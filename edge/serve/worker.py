"""The one thread that runs model work for ``edge-run --serve``, in arrival order, from a bounded queue.

A :class:`Job` is a request's work as a generator; the worker runs it and hands each item to the
request's handler through a small queue, so it never runs more than a few items ahead of a slow
client, and stops between items once the client is gone or the deadline has passed.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from edge.errors import ContextOverflowError, EdgeError
from edge.serve.api import ApiError

STREAM_AHEAD = 8  # items the worker may run ahead of a slow reader: a gone client is noticed within them
POLL_S = 0.05
DONE = object()  # the last event of a job that succeeded


class Job:
    """One request's model work, run on the worker thread; its results flow back through ``events``."""

    def __init__(self, work: Callable[[], Iterator[Any]], timeout_s: float):
        self.work = work
        self.deadline = time.monotonic() + timeout_s
        self.events: queue.Queue = queue.Queue(STREAM_AHEAD)
        self.cancelled = threading.Event()  # set by the handler when the client is gone (or it is done reading)

    def _put(self, event: Any) -> bool:
        """Hand ``event`` to the handler, waiting while it is behind; False once nobody will read it."""
        while not self.cancelled.is_set():
            try:
                self.events.put(event, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _check_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            raise ApiError(504, "the request took longer than the server's timeout", "timeout_error", code="timeout")

    def run(self) -> str:
        """Do the work; returns the outcome: done, cancelled, timeout or error."""
        if self.cancelled.is_set():
            return "cancelled"  # the client left while the request waited in the queue
        outcome = "done"
        items = None
        try:
            self._check_deadline()
            items = self.work()
            for item in items:
                self._check_deadline()
                if not self._put(item):
                    return "cancelled"
            self._check_deadline()  # an answer in one part (a command) is checked once it is ready
            final: Any = DONE
        except ApiError as e:
            final, outcome = e, "timeout" if e.status == 504 else "error"
        except ContextOverflowError as e:
            final, outcome = ApiError(400, str(e), code="context_length_exceeded"), "error"
        except (EdgeError, ValueError) as e:
            final, outcome = ApiError(400, str(e)), "error"
        except Exception as e:  # a bug: say so to the client and the log, keep serving
            traceback.print_exc()
            final, outcome = ApiError(500, f"internal error: {e}", "server_error"), "error"
        finally:
            if items is not None and hasattr(items, "close"):
                items.close()  # ends a generation stopped early, so its model state is consistent
        self._put(final)
        return outcome


class Worker:
    """The one thread that runs model work, in arrival order, from a bounded queue."""

    def __init__(self, queue_size: int):
        self.jobs: queue.Queue[Job | None] = queue.Queue(queue_size)
        self.counts: Counter[str] = Counter()
        self.busy = False
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="edge-worker", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> None:
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            self.counts["rejected"] += 1
            raise ApiError(
                429,
                f"the server is busy: {self.jobs.maxsize} requests are already waiting; retry shortly",
                "rate_limit_error",
                code="queue_full",
            ) from None

    def call(self, work: Callable[[], Iterator[Any]], timeout_s: float) -> Iterator[Any]:
        """Run ``work`` here for another thread of this process (the assistant inside ``--serve``) and yield
        its items as they come. Unlike :meth:`submit` it waits for room in a full queue (a voice request
        must not be refused because the panel is busy) until ``timeout_s``; raises the job's
        :class:`ApiError` (504 past the deadline, 503 once the worker has stopped)."""
        job = Job(work, timeout_s)
        try:
            while True:
                if self.stopped.is_set():
                    raise _shutting_down()
                job._check_deadline()
                try:
                    self.jobs.put(job, timeout=POLL_S)
                    break
                except queue.Full:
                    continue
            while True:
                try:
                    event = job.events.get(timeout=POLL_S)
                except queue.Empty:
                    if not self.thread.is_alive():  # stopped before it reached this job
                        raise _shutting_down() from None
                    continue
                if event is DONE:
                    return
                if isinstance(event, ApiError):
                    raise event
                yield event
        finally:
            job.cancelled.set()

    def _loop(self) -> None:
        while (job := self.jobs.get()) is not None:
            self.busy = True
            self.counts[job.run()] += 1
            self.busy = False

    def stop(self) -> None:
        self.stopped.set()
        self.jobs.put(None)


def _shutting_down() -> ApiError:
    return ApiError(503, "the server is shutting down", "server_error", code="shutting_down")
