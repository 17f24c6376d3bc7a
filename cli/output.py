"""Where the client's words go: data on stdout, messages on stderr; `--json` makes stdout
one JSON object per line and nothing else, so scripts can read it line by line."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TextIO


class Output:
    def __init__(self, json_lines: bool = False, stdout: TextIO | None = None,
                 stderr: TextIO | None = None) -> None:
        self.json_lines = json_lines
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr

    def emit(self, obj: dict[str, Any]) -> None:
        """One JSON line on stdout, flushed so a reading script sees it at once."""
        self.stdout.write(json_line(obj))
        self.stdout.flush()

    def data(self, text: str) -> None:
        """A human-mode result line on stdout (e.g. an id a shell captures)."""
        if not self.json_lines:
            print(text, file=self.stdout, flush=True)

    def note(self, text: str) -> None:
        print(f"h4backup: {text}", file=self.stderr, flush=True)

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
        for line in format_table(headers, list(rows)):
            self.data(line)

    def pairs(self, rows: Iterable[tuple[str, str]]) -> None:
        """`name  value` lines, values aligned: one object for people to read."""
        for line in format_table(None, list(rows)):
            self.data(line)


def json_line(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=False) + "\n"


def format_table(headers: Sequence[str] | None, rows: list[Sequence[str]]) -> list[str]:
    lines = [headers, *rows] if headers else rows
    if not lines:
        return []
    widths = [max(len(str(cell)) for cell in column) for column in zip(*lines, strict=True)]
    return ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
            .rstrip() for row in lines]


def when(ms: int | None) -> str:
    """A vCDA time (ms since the epoch, -1 for not yet) in local time."""
    if ms is None or ms < 0:
        return "-"
    return datetime.fromtimestamp(ms / 1000).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    whole = max(0, round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def short_hash(vcda_hash: str, pairs: int = 6) -> str:
    """`SHA-512:AB:CD:...` cut to its first pairs: enough to tell backups apart on screen."""
    body = vcda_hash.removeprefix("SHA-512:")
    return f"SHA-512:{':'.join(body.split(':')[:pairs])}..." if body else "-"


def human_bytes(count: int | None) -> str:
    """Decimal units, as rich's download bar shows them, so the figures agree on screen."""
    if count is None:
        return "-"
    size = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"
