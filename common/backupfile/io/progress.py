"""Progress as an integer percent, reported only when it rises and at most a few times a second.

Each emit is a write to the task row; a tree of many small files would otherwise write on every
file. 100 is never emitted here: only the store, when the backup is safely renamed, says 100.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

from common.errors import H4Error, TaskCanceled

_CEILING_BEFORE_SUCCESS = 99
_STOP_CHECK_INTERVAL = 0.1


class Reporter(Protocol):
    """A task's window on its row: progress, warnings and whether to stop."""

    def progress(self, percent: int) -> None: ...

    def warning(self, error: H4Error) -> None: ...

    def should_stop(self) -> bool: ...


class ProgressThrottle:
    """Turns a stream of byte counts into rare, rising percent reports."""

    def __init__(
        self,
        total_bytes: int,
        emit: Callable[[int], None],
        min_interval: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total_bytes = total_bytes
        self.done_bytes = 0
        self.finished = False
        self._emit = emit
        self._min_interval = min_interval
        self._clock = clock
        self._last_emitted = 0
        self._last_emit_time = -math.inf

    @property
    def percent(self) -> int:
        """Share of the bytes done, capped at 99 until the work is finished."""
        if self.finished:
            return 100
        if self.total_bytes <= 0:
            return 0
        return min(_CEILING_BEFORE_SUCCESS, self.done_bytes * 100 // self.total_bytes)

    def advance(self, n_bytes: int) -> None:
        self.done_bytes += n_bytes
        if self.finished:
            return
        percent = self.percent
        if percent <= self._last_emitted:
            return
        now = self._clock()
        if now - self._last_emit_time >= self._min_interval:
            self._last_emitted, self._last_emit_time = percent, now
            self._emit(percent)

    def finish(self) -> None:
        """Marks success; reports nothing, since the final 100 comes with the stored result."""
        self.finished = True


class Watch:
    """Progress by bytes, and the stop flag asked at most ten times a second."""

    def __init__(self, reporter: Reporter, total_bytes: int) -> None:
        self.reporter = reporter
        self._throttle = ProgressThrottle(total_bytes, reporter.progress)
        self._last_check = float("-inf")

    def advance(self, n_bytes: int) -> None:
        self._throttle.advance(n_bytes)

    def checkpoint(self) -> None:
        # Between files (or members) and for every MiB: a tree of tiny files would otherwise
        # ask the task row whether to stop thousands of times a second.
        now = time.monotonic()
        if now - self._last_check < _STOP_CHECK_INTERVAL:
            return
        self._last_check = now
        if self.reporter.should_stop():
            raise TaskCanceled()

    def finish(self) -> None:
        self._throttle.finish()
