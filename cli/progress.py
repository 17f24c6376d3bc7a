"""Progress of a server task or a download: a rich bar on stderr, or JSON status lines.

A task row carries only a percent, no byte counts, so a task's bar shows percent, elapsed
time and a time left estimated from how fast the percent has been rising; byte figures appear
only where the client counts real bytes (downloads) or the result reports them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from cli.output import Output, duration

Clock = Callable[[], float]
STATUS_INTERVAL_SECONDS = 0.5


class PercentEta:
    """Time left from the percent's rate since it first moved (a queued task sits at 0)."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.base: tuple[float, int] | None = None
        self.moved = False

    def observe(self, percent: int) -> float | None:
        now = self.clock()
        if self.base is None or (not self.moved and percent == self.base[1]):
            self.base = (now, percent)
            return None
        self.moved = True
        since, first = self.base
        if percent >= 100:
            return 0.0
        if percent <= first or now <= since:
            return None
        return (100 - percent) * (now - since) / (percent - first)

    def elapsed(self) -> float:
        return self.clock() - self.started


class TaskProgress:
    """Reports each poll of a task; call `update` with every ApiTask seen, `close` once."""

    def __init__(self, output: Output, label: str, clock: Clock = time.monotonic) -> None:
        self.output, self.label = output, label
        self.eta = PercentEta(clock)
        self.last_sent: int | None = None
        self.bar: Progress | None = None
        if not output.json_lines:
            self.bar = _task_bar(output)
            self.bar_task = self.bar.add_task(label, total=100, left=duration(None))
            self.bar.start()

    def update(self, task: dict[str, Any]) -> None:
        percent = int(task.get("progress") or 0)
        left = self.eta.observe(percent)
        if self.bar is not None:
            self.bar.update(self.bar_task, completed=percent, left=duration(left))
        elif percent != self.last_sent:
            self.output.emit(status_line(task, self.eta.elapsed(), left))
        self.last_sent = percent

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def status_line(task: dict[str, Any], elapsed: float, left: float | None) -> dict[str, Any]:
    """restic-style status: `percent_done` is a fraction 0..1, `progress` the API's 0..100."""
    percent = int(task.get("progress") or 0)
    line: dict[str, Any] = {"message_type": "status", "task_id": task.get("id"),
                            "state": task.get("state"), "progress": percent,
                            "percent_done": percent / 100,
                            "seconds_elapsed": round(elapsed, 3)}
    if left is not None:
        line["seconds_remaining"] = round(left, 3)
    return line


def _task_bar(output: Output) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                    TextColumn("elapsed"), TimeElapsedColumn(),
                    TextColumn("left {task.fields[left]}"),
                    console=Console(file=output.stderr))


class ByteProgress:
    """Bytes received against the expected total, throttled to a few JSON lines a second."""

    def __init__(self, output: Output, label: str, total: int | None, done: int = 0,
                 clock: Clock = time.monotonic) -> None:
        self.output, self.label, self.total, self.done = output, label, total, done
        self.clock = clock
        self.started = self.last_sent = clock()
        self.first_done = done
        self.bar: Progress | None = None
        if not output.json_lines:
            self.bar = _byte_bar(output)
            self.bar_task = self.bar.add_task(label, total=total, completed=done)
            self.bar.start()

    def advance(self, count: int) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(self.bar_task, completed=self.done)
        elif self.clock() - self.last_sent >= STATUS_INTERVAL_SECONDS:
            self.send()

    def send(self) -> None:
        self.last_sent = self.clock()
        self.output.emit(self.status())

    def status(self) -> dict[str, Any]:
        elapsed = self.clock() - self.started
        line: dict[str, Any] = {"message_type": "status", "action": self.label,
                                "bytes_done": self.done, "total_bytes": self.total,
                                "seconds_elapsed": round(elapsed, 3)}
        if self.total:
            line["percent_done"] = round(self.done / self.total, 4)
            rate = (self.done - self.first_done) / elapsed if elapsed > 0 else 0
            if rate > 0:
                line["seconds_remaining"] = round((self.total - self.done) / rate, 3)
        return line

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
        else:
            self.send()


def _byte_bar(output: Output) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                    DownloadColumn(), TransferSpeedColumn(),
                    TextColumn("left"), TimeRemainingColumn(),
                    console=Console(file=output.stderr))
