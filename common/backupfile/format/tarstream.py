"""A POSIX (PAX) tar stream written straight into one reused buffer, then to the sink in blocks.

tarfile's stream mode copies every byte through its own buffer twice and hands the sink
whatever sizes the member boundaries give it. Here file bytes are read straight into the
buffer (see `reserve`), headers and small files gather in it, and the sink only ever sees
writes of about the buffer's size: the compressor behind it then runs with few, large calls.
The bytes are the ones `tarfile.open(mode="w|", format=PAX_FORMAT)` would write.

The sink must copy what it is given before returning, as files, BytesIO and the zstd writer do:
the buffer is refilled as soon as `write` returns.
"""

from __future__ import annotations

import tarfile
from typing import Protocol

BLOCK_SIZE = tarfile.BLOCKSIZE
RECORD_SIZE = tarfile.RECORDSIZE
# Below this much free room, a read would be too small to be worth it: the buffer goes first.
_MIN_READ = 64 << 10
_ZEROS = bytes(RECORD_SIZE)


class Sink(Protocol):
    def write(self, data: memoryview, /) -> object: ...


class TarStream:
    """Tar members, as headers, content and padding, gathered into large writes to a sink."""

    def __init__(self, sink: Sink, buffer_size: int) -> None:
        self._sink = sink
        self._view = memoryview(bytearray(buffer_size))
        self._fill = 0
        self.offset = 0  # bytes of the tar stream so far, buffered or not

    def header(self, info: tarfile.TarInfo) -> None:
        self.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def write(self, data: bytes) -> None:
        size = len(data)
        if size > len(self._view) - self._fill:
            self.flush()
        if size >= len(self._view):
            self._sink.write(memoryview(data))
        else:
            self._view[self._fill:self._fill + size] = data
            self._fill += size
        self.offset += size

    def reserve(self, wanted: int) -> memoryview:
        """Free room in the buffer for up to wanted bytes; `commit` then says how many came."""
        if len(self._view) - self._fill < min(wanted, _MIN_READ):
            self.flush()
        return self._view[self._fill:self._fill + min(wanted, len(self._view) - self._fill)]

    def commit(self, size: int) -> None:
        self._fill += size
        self.offset += size

    def pad(self) -> None:
        """Zeros up to the next 512-byte block, as every member's content ends."""
        self.write(_ZEROS[:-self.offset % BLOCK_SIZE])

    def end(self) -> None:
        """The two zero blocks that end a tar stream, padded to a whole record like tarfile."""
        self.write(_ZEROS[:2 * BLOCK_SIZE])
        self.write(_ZEROS[:-self.offset % RECORD_SIZE])
        self.flush()

    def flush(self) -> None:
        if self._fill:
            self._sink.write(self._view[:self._fill])
            self._fill = 0
