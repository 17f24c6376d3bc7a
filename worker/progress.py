"""Progress as an integer percent, reported only when it rises and at most a few times a second.

Each emit is a write to the task row; a tree of many small files would otherwise write on every
file. 100 is never emitted here: only the store, when the backup is safely renamed, says 100.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

_CEILING_BEFORE_SUCCESS = 99


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
