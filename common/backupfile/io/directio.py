"""Large sequential writes that bypass the page cache (O_DIRECT), buffered where that fails.

A backup or a restore writes gigabytes that nobody reads again soon. Through the page cache,
every new page must first be found and mapped: on a virtual machine whose memory the host
hands out lazily this costs more CPU than compressing the same bytes (measured with
bench/restore_speed.py), and the cache then holds the data in place of what other programs
use. With O_DIRECT the disk reads the bytes from one reused, aligned buffer instead.

O_DIRECT wants the buffer, the file offset and the length aligned; the last partial block of a
file goes through the page cache after O_DIRECT is switched off. A filesystem that refuses
O_DIRECT (tmpfs, some network filesystems) simply gets buffered writes; durability comes from
the fsync or filesystem sync that the caller does anyway.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os

ALIGNMENT = 4096
BUFFER_SIZE = 4 << 20
_O_DIRECT = getattr(os, "O_DIRECT", 0)


def aligned_buffer(size: int = BUFFER_SIZE) -> memoryview:
    """Page-aligned memory (anonymous mmap), good for O_DIRECT on any device."""
    return memoryview(mmap.mmap(-1, size))


class DirectWriter:
    """Writes to fd, through buffer, with O_DIRECT if asked and the filesystem takes it.

    finish() writes what is left; only then may the buffer serve another writer.
    """

    def __init__(self, fd: int, buffer: memoryview, direct: bool = True) -> None:
        self._fd, self._buffer, self._fill = fd, buffer, 0
        self.direct = direct and _set_direct(fd, True)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        if not self.direct:
            self._write_fully(view)
            return
        while view:
            take = min(len(view), len(self._buffer) - self._fill)
            self._buffer[self._fill:self._fill + take] = view[:take]
            self._fill += take
            view = view[take:]
            if self._fill == len(self._buffer):
                self._flush(self._fill)

    def finish(self) -> None:
        """Writes what is still buffered; the file is then written up to its last byte."""
        self._flush(self._fill - self._fill % ALIGNMENT)
        if self._fill:
            self._go_buffered()
            self._flush(self._fill)

    def _flush(self, size: int) -> None:
        if not size:
            return
        self._write_fully(self._buffer[:size])
        rest = self._fill - size
        self._buffer[:rest] = self._buffer[size:self._fill]
        self._fill = rest

    def _write_fully(self, view: memoryview) -> None:
        while view:
            try:
                view = view[os.write(self._fd, view):]
            except OSError as error:
                # A short write left the offset unaligned, or the device wants other sizes:
                # the rest goes through the page cache.
                if not (self.direct and error.errno == errno.EINVAL):
                    raise
                self._go_buffered()

    def _go_buffered(self) -> None:
        if self.direct:
            _set_direct(self._fd, False)
            self.direct = False


def _set_direct(fd: int, on: bool) -> bool:
    """Switches O_DIRECT on fd; whether it was switched."""
    if not _O_DIRECT:
        return False
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | _O_DIRECT if on else flags & ~_O_DIRECT)
    except OSError:
        return False
    return True
