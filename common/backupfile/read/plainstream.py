"""The decompressed tar stream of a backup, decoded on a background thread, read forward only.

The thread reads, decrypts and decompresses a few MiB ahead of the reader; the reader takes
views of the decompressed blocks, so file bytes are never copied between the two. It offers
just what tarfile needs of a file in "r:" mode (read, tell, forward seek).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Iterator

from common.backupfile.io.handoff import Producer

# Blocks of about 1 MiB each, decoded ahead of the reader.
_BLOCKS_AHEAD = 8
_NOTHING = memoryview(b"")


class PlainStream:
    """Bytes from blocks that produce() yields on a background thread."""

    def __init__(self, produce: Callable[[], Iterator[bytes]]) -> None:
        self._blocks: Producer[bytes] = Producer(produce, "backup-reader", _BLOCKS_AHEAD)
        self._block = _NOTHING
        self._position = 0

    def take(self, size: int) -> memoryview:
        """The next bytes, at most size of them, fewer at a block's end; empty at the end."""
        if not self._block:
            block = self._blocks.get()
            if block is None:
                return _NOTHING
            self._block = memoryview(block)
        view, self._block = self._block[:size], self._block[size:]
        self._position += len(view)
        return view

    def read(self, size: int = -1) -> bytes:
        parts, wanted = [], size if size >= 0 else float("inf")
        while wanted > 0 and (view := self.take(int(min(wanted, 1 << 20)))):
            parts.append(view)
            wanted -= len(view)
        return b"".join(parts)

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence != io.SEEK_SET or offset < self._position:
            # tarfile goes back only on archives laid out unlike any tar writer's output.
            raise tarfile.ReadError("the archive would have to be read backwards")
        while self._position < offset and self.take(offset - self._position):
            pass
        return self._position

    def close(self) -> None:
        self._blocks.close()
