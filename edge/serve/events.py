"""What happened, told to everyone listening: the commands and assistant events ``edge-run --serve`` streams at
``GET /v1/events``, so a panel page and a voice share one state.

>>> hub = EventHub()
>>> sub = hub.subscribe()             # None when max_subscribers are already listening
>>> hub.publish({"event": "command", "command": "set_light", "args": {"on": True}})
>>> sub.get(timeout=1.0)              # the event; None on a timeout, or once the subscriber is closed

:meth:`EventHub.publish` never blocks: each subscriber has a small queue of its own, and one that falls
:data:`BACKLOG` events behind is dropped (its stream ends; the page reconnects and reads state afresh), so a
slow client can never hold up a command or the assistant's loop.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from typing import Any

MAX_SUBSCRIBERS = 8  # each holds a connection (and its thread) for as long as it listens
BACKLOG = 64  # events a subscriber may be behind before it is dropped


class Subscriber:
    """One listener's queue of events; :attr:`closed` once it was dropped, unsubscribed or the hub closed."""

    def __init__(self, backlog: int):
        self._events: queue.Queue[dict | None] = queue.Queue(backlog)
        self.closed = threading.Event()
        self.dropped = False  # fell too far behind

    def get(self, timeout: float) -> dict | None:
        """The next event, waiting up to ``timeout`` seconds; None when there is none yet or it is closed."""
        if self.closed.is_set():
            return None
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            return None

    def _offer(self, event: dict) -> bool:
        try:
            self._events.put_nowait(event)
            return True
        except queue.Full:
            return False

    def _close(self) -> None:
        self.closed.set()
        self._offer(None)  # wakes a get() that is waiting (dropped when the queue is full: it is behind anyway)


class EventHub:
    """Fans events out to at most ``max_subscribers`` listeners without ever waiting on one."""

    def __init__(self, max_subscribers: int = MAX_SUBSCRIBERS, backlog: int = BACKLOG):
        self.max_subscribers = max_subscribers
        self.backlog = backlog
        self.closed = threading.Event()
        self.published = 0
        self.dropped = 0
        self._lock = threading.Lock()
        self._subscribers: set[Subscriber] = set()
        self._ids = itertools.count(1)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def subscribe(self) -> Subscriber | None:
        """A new listener, or None when the hub is full or closed."""
        with self._lock:
            if self.closed.is_set() or len(self._subscribers) >= self.max_subscribers:
                return None
            sub = Subscriber(self.backlog)
            self._subscribers.add(sub)
            return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(sub)
        sub._close()

    def publish(self, event: dict[str, Any]) -> dict:
        """Send ``event`` (with an ``id`` and wall-clock ``time`` added) to every listener; returns it as sent."""
        with self._lock:
            event = {"id": next(self._ids), "time": round(time.time(), 3)} | event
            self.published += 1
            behind = [s for s in self._subscribers if not s._offer(event)]
            for sub in behind:
                self._subscribers.discard(sub)
            self.dropped += len(behind)
        for sub in behind:
            sub.dropped = True
            sub.closed.set()  # its queue is full: the reader sees closed at its next get()
        return event

    def close(self) -> None:
        """End every stream (server shutdown); later subscribe() calls get None."""
        with self._lock:
            self.closed.set()
            subs, self._subscribers = self._subscribers, set()
        for sub in subs:
            sub._close()
