"""Asks the kernel to read the next files of a walk while the pipeline works on this one.

The kernel reads ahead within a file it sees read in order, but a backup opens thousands of
files one after the other, and each starts with a read that waits for the disk while the
cores have nothing to compress. Here the walk runs a window ahead of the archive: every
regular file that enters the window gets POSIX_FADV_WILLNEED, so its first bytes are on their
way before the archive opens it. The window is counted in bytes and in entries, so that
neither large files nor a folder of a million tiny ones make it grow, and what it reads lands
in the page cache, not in this process.

Priming the window before the key derivation starts the disk during scrypt's second of CPU.
The hint is only a hint: a file that cannot be opened here is left to the archive, which
reports it. Files are opened as the archive opens them (no symlink followed, no blocking on
a fifo that replaced a file since the walk) and closed at once.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator

from common.backupfile.write.sources import SOURCE_FILE_FLAGS, Entry

# About a quarter of a second of a disk at 500 MB/s: enough to hide each file's first wait,
# small next to the page cache of any machine that runs backups.
AHEAD_BYTES = 128 << 20
AHEAD_ENTRIES = 4096


def advise_will_need(path: str) -> bool:
    """Starts reading path into the page cache without waiting; whether the hint was given."""
    try:
        fd = os.open(path, SOURCE_FILE_FLAGS)
    except OSError:
        return False
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        return True
    except OSError:  # a fifo or a socket that took the file's place: nothing to read ahead
        return False
    finally:
        os.close(fd)


def _no_advice(_path: str) -> bool:
    return False


# Where the system has no posix_fadvise (macOS), the walk is only passed through.
_ADVISE = advise_will_need if hasattr(os, "posix_fadvise") else _no_advice


class ReadAhead:
    """The entries of a walk, in order, with the files of the next window already asked for."""

    def __init__(self, entries: Iterator[Entry], ahead_bytes: int = AHEAD_BYTES,
                 ahead_entries: int = AHEAD_ENTRIES,
                 advise: Callable[[str], object] | None = None) -> None:
        self._entries = entries
        self._window: deque[Entry] = deque()
        self._window_bytes = 0
        self._ahead_bytes, self._ahead_entries = ahead_bytes, ahead_entries
        self._advise = advise or _ADVISE
        self._walked = False

    def prime(self, ahead_bytes: int | None = None) -> None:
        """Fills the window now, before the first entry is taken; up to ahead_bytes, if given,
        in place of the window's own size (the window then shrinks back as entries are taken)."""
        usual = self._ahead_bytes
        self._ahead_bytes = max(usual, ahead_bytes or 0)
        try:
            self._fill()
        finally:
            self._ahead_bytes = usual

    def __iter__(self) -> Iterator[Entry]:
        self._fill()
        while self._window:
            entry = self._window.popleft()
            if entry.kind == "file":
                self._window_bytes -= entry.stat.st_size
            # Refilled before the entry is handed on: the next file is asked for while this
            # one is read.
            self._fill()
            yield entry

    def _fill(self) -> None:
        while (not self._walked and self._window_bytes < self._ahead_bytes
               and len(self._window) < self._ahead_entries):
            entry = next(self._entries, None)
            if entry is None:
                self._walked = True
                return
            self._window.append(entry)
            if entry.kind == "file":
                self._window_bytes += entry.stat.st_size
                self._advise(entry.path)
