"""What an export prints while it runs: numbered stages, and a count with an ETA inside the long ones.

A stage whose work can be counted (tokens checked, graph nodes packed, training steps, held-out
requests) counts it through a :class:`Ticker`: on a terminal one line redrawn in place, otherwise
(a log, a pipe, a test) a line every ``EVERY`` seconds. A stage that cannot be counted (loading
the source through transformers, onnxruntime's int8 quantizer) says how long it has been running
whenever it has been quiet for 15 s, so a silent minute on a slow board never looks like a hang.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

Say = Callable[[str], None]
T = TypeVar("T")
EVERY = 10.0  # seconds between progress lines when they cannot be redrawn in place


def stderr_line(line: str) -> None:
    """The default ``say``: one line to standard error."""
    print(line, file=sys.stderr, flush=True)


class Progress:
    """Numbered stages with timings (``[2/6] build ONNX graph: done in 3.1 s``) and their tickers."""

    def __init__(self, say: Say = stderr_line, total: int = 1, every: float = EVERY):
        self._say = say
        self.total = total
        self.every = every
        self.n = 0
        self.last = time.perf_counter()  # when anything was last shown
        # redraw in place only where a person watches: our own stderr writer on a terminal
        self.live = sys.stderr if say is stderr_line and sys.stderr.isatty() else None

    def say(self, line: str) -> None:
        self.last = time.perf_counter()
        self._say(line)

    def redraw(self, line: str, final: bool) -> None:
        """Rewrite the terminal's current line (``live`` only); ``final`` ends it."""
        assert self.live is not None
        self.last = time.perf_counter()
        self.live.write("\r" + line.ljust(72) + ("\n" if final else ""))
        self.live.flush()

    @contextmanager
    def stage(self, what: str) -> Iterator[None]:
        self.n += 1
        self.say(f"[{self.n}/{self.total}] {what} ...")
        start = time.perf_counter()
        finished = threading.Event()

        def heartbeat() -> None:
            while not finished.wait(1.0):
                # a ticker inside the stage shows something every `every` s, so this stays quiet
                if time.perf_counter() - self.last >= 1.5 * self.every:
                    self.say(f"      ... {time.perf_counter() - start:.0f} s")

        beat = threading.Thread(target=heartbeat, daemon=True)
        beat.start()
        try:
            yield
        finally:
            finished.set()
            beat.join()
        self.say(f"[{self.n}/{self.total}] {what}: done in {time.perf_counter() - start:.1f} s")

    def ticker(self, total: int, unit: str) -> Ticker:
        """Count ``total`` ``unit`` of work inside the current stage."""
        return Ticker(self, total, unit)


class Ticker:
    """``412/1009 tokens  21 s, ETA 31 s`` for a loop of known length: redrawn at most every 0.2 s
    on a terminal, else a line every ``progress.every`` seconds, and always once at the end.
    """

    def __init__(self, progress: Progress, total: int, unit: str):
        self.progress, self.total, self.unit = progress, total, unit
        self.every = 0.2 if progress.live is not None else progress.every
        self.done = 0
        self.start = time.perf_counter()

    def line(self, note: str = "") -> str:
        elapsed = time.perf_counter() - self.start
        eta = elapsed / max(self.done, 1) * (self.total - self.done)
        note = f" {note}" if note else ""
        return f"      {self.done}/{self.total} {self.unit}{note}  {elapsed:.0f} s, ETA {eta:.0f} s"

    def step(self, note: str = "") -> None:
        """Count one more done; show it if it is time to, or if the work is finished."""
        self.done += 1
        if time.perf_counter() - self.progress.last < self.every and self.done < self.total:
            return
        if self.progress.live is None:
            self.progress.say(self.line(note))
        else:
            self.progress.redraw(self.line(note), final=self.done >= self.total)

    def close(self) -> None:
        """End a redrawn line that stopped short (an error, Ctrl-C), so the next message starts clean."""
        if self.progress.live is not None and 0 < self.done < self.total:
            self.progress.redraw(self.line(), final=True)

    def over(self, items: Iterable[T]) -> Iterator[T]:
        """Yield ``items``, counting each once it has been processed."""
        try:
            for item in items:
                yield item
                self.step()
        finally:
            self.close()
