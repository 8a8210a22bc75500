"""Progress bars for the library's ``Progress`` events, on stderr.

On a terminal each task gets click's bar (position, percentage, ETA). Otherwise (a
pipe, a log file, CI) a task prints a line when it starts, at most one every few
seconds while it runs, and one when it ends, so logs stay short and readable.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

import click

from mneme._types import Progress

__all__ = ["Bars"]

_LINE_EVERY_S = 5.0


class Bars:
    """A ``ProgressFn`` drawing one bar per task; safe to call from several threads."""

    def __init__(self, stream: TextIO | None = None, *, quiet: bool = False) -> None:
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._quiet = quiet
        self._lock = threading.Lock()
        self._task: str | None = None
        self._bar: Any = None
        self._started = 0.0
        self._last_line = 0.0

    def __call__(self, p: Progress) -> None:
        if self._quiet:
            return
        with self._lock:
            if p.task != self._task:
                self._finish()
                self._start(p)
            self._update(p)
            if p.total is not None and p.done >= p.total:
                self._end(p)

    def close(self) -> None:
        with self._lock:
            self._finish()

    # -- one task ------------------------------------------------------------------

    def _start(self, p: Progress) -> None:
        self._task = p.task
        self._started = time.monotonic()
        self._last_line = self._started
        if self._tty and p.total:
            bar = click.progressbar(
                length=p.total,
                label=f"{p.task:<9}",
                show_eta=True,
                show_pos=True,
                show_percent=True,
                file=self._stream,
            )
            self._bar = bar.__enter__()
        elif p.total and not self._tty:
            self._line(p, "")

    def _update(self, p: Progress) -> None:
        if self._bar is not None:
            step = p.done - self._bar.pos
            if step > 0:
                self._bar.update(step)
            return
        now = time.monotonic()
        running = bool(p.total) and 0 < p.done < (p.total or 0)
        if not self._tty and running and now - self._last_line >= _LINE_EVERY_S:
            self._last_line = now
            total = p.total or 0
            rate = p.done / max(now - self._started, 1e-9)
            eta = (total - p.done) / rate
            self._line(p, f" ({100 * p.done // total}%, ETA {_duration(eta)})")
        elif self._tty and not p.total and p.done:
            self._stream.write(f"\r{p.task}: {p.done:,} {p.unit}")
            self._stream.flush()

    def _end(self, p: Progress) -> None:
        elapsed = time.monotonic() - self._started
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
        elif self._tty and p.done:
            self._stream.write("\n")
        elif not self._tty and p.done:
            self._line(p, f" in {_duration(elapsed)}")
        self._task = None

    def _finish(self) -> None:
        """End a task that was left unfinished (an error, or a new task began)."""
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
        self._task = None

    def _line(self, p: Progress, tail: str) -> None:
        total = "" if p.total is None else f" / {p.total:,}"
        self._stream.write(f"{p.task}: {p.done:,}{total} {p.unit}{tail}\n")
        self._stream.flush()


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs:02d} s"
