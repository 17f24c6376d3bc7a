"""Small crafted backup files that declare, or expand to, far more than they weigh.

Each is a plain `.tar.zst` (the import takes those as well as age files), written member by
member and compressed as it goes, so that a payload of hundreds of MiB never sits in the test's
own memory: it leaves the compressor as a few KiB.
"""

from __future__ import annotations

import hashlib
import json
import tarfile

import zstandard

BLOCK = tarfile.BLOCKSIZE
MTIME = 1_600_000_000
MANIFEST_NAME = "h4backup-manifest.jsonl"
_CHUNK = 1 << 20


class CraftedBackup:
    """A plain backup file built by hand; `manifest()` then `finish()` end it."""

    def __init__(self, source: str = "tree") -> None:
        self._zstd = zstandard.ZstdCompressor(level=3, write_checksum=True).compressobj()
        self._parts: list[bytes] = []
        self._offset = 0
        self.lines: list[dict] = [{"format": "h4backup-manifest", "version": 1,
                                   "backupId": "crafted", "createdAt": MTIME * 1000,
                                   "sources": [source]}]
        self.folder(source)

    def raw(self, data: bytes) -> None:
        self._parts.append(self._zstd.compress(data))
        self._offset += len(data)

    def repeat(self, byte: bytes, count: int) -> None:
        """count copies of one byte, fed to the compressor a MiB at a time."""
        chunk = byte * _CHUNK
        for start in range(0, count, _CHUNK):
            self.raw(chunk[:min(_CHUNK, count - start)])

    def pad(self) -> None:
        self.raw(bytes(-self._offset % BLOCK))

    def header(self, info: tarfile.TarInfo) -> None:
        self.raw(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def folder(self, name: str) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, MTIME
        self.header(info)
        self._record(info, "dir")

    def file(self, name: str, data: bytes = b"", repeat: int = 1) -> None:
        """A file of data repeated `repeat` times (zeros compress to almost nothing)."""
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data) * repeat, 0o644, MTIME
        self.header(info)
        digest = hashlib.sha256()
        for _ in range(repeat):
            self.raw(data)
            digest.update(data)
        self.pad()
        self._record(info, "file", digest.hexdigest())

    def declare(self, kind: bytes, size: int) -> None:
        """A bare header of another kind (pax 'x'/'g', GNU 'L'/'K'/'S') declaring size bytes."""
        info = tarfile.TarInfo("././@LongLink" if kind in b"LK" else "././@PaxHeader")
        info.type, info.size, info.mtime = kind, size, MTIME
        self.raw(info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape"))

    def extension(self, kind: bytes, payload_size: int, prefix: bytes, fill: bytes,
                  suffix: bytes) -> None:
        """An extension header (pax 'x', GNU 'L'/'K') declaring payload_size bytes, then the
        payload itself: prefix, fill repeated, suffix."""
        self.declare(kind, payload_size)
        self.raw(prefix)
        self.repeat(fill, payload_size - len(prefix) - len(suffix))
        self.raw(suffix)
        self.pad()

    def manifest(self, size: int | None = None, fill: bytes = b" ", extra: bytes = b"") -> None:
        """The manifest member: the real one (then extra), or one of `size` bytes whose header
        line is padded with `fill` up to that size (a single line)."""
        body = b"".join(json.dumps(line).encode() + b"\n" for line in self.lines) + extra
        info = tarfile.TarInfo(MANIFEST_NAME)
        info.size, info.mode, info.mtime = size or len(body), 0o600, MTIME
        self.header(info)
        if size is None:
            self.raw(body)
        else:
            first = json.dumps(self.lines[0]).encode()
            self.raw(first[:-1])
            self.repeat(fill, size - len(first) - 1)
            self.raw(b"}\n")
        self.pad()

    def finish(self) -> bytes:
        self.raw(bytes(2 * BLOCK))
        self.pad()
        self._parts.append(self._zstd.flush())
        return b"".join(self._parts)

    def _record(self, info: tarfile.TarInfo, kind: str, sha256: str | None = None) -> None:
        line = {"path": info.name, "type": kind, "size": info.size, "mode": info.mode,
                "mtime": info.mtime}
        if sha256 is not None:
            line["sha256"] = sha256
        self.lines.append(line)


def pax_record(size: int, keyword: str = "path") -> tuple[bytes, bytes]:
    """The prefix and suffix of one pax record of exactly size bytes: `<size> <key>=...\\n`."""
    return f"{size} {keyword}=".encode(), b"\n"


def manifest_bomb(size: int) -> bytes:
    """A valid archive whose manifest is one line of size bytes."""
    backup = CraftedBackup()
    backup.file("tree/a", b"a")
    backup.manifest(size=size)
    return backup.finish()


def pax_bomb(size: int) -> bytes:
    """A pax extended header declaring (and holding) one path record of size bytes."""
    backup = CraftedBackup()
    prefix, suffix = pax_record(size)
    backup.extension(tarfile.XHDTYPE, size, prefix + b"tree/", b"a", suffix)
    backup.file("tree/b", b"b")
    backup.manifest()
    return backup.finish()


def gnu_long_bomb(kind: bytes, size: int) -> bytes:
    """A GNU long-name ('L') or long-link ('K') header of size bytes before a member."""
    backup = CraftedBackup()
    backup.extension(kind, size, b"tree/", b"a", b"\0")
    info = tarfile.TarInfo("tree/c")
    info.type, info.linkname, info.mtime = tarfile.SYMTYPE, "a", MTIME
    backup.header(info)
    backup.manifest()
    return backup.finish()


def zeros_bomb(files: int, file_size: int) -> bytes:
    """files members of file_size zero bytes each, listed by a valid manifest."""
    backup = CraftedBackup()
    for index in range(files):
        backup.file(f"tree/zeros{index:04d}", bytes(1 << 20), file_size >> 20)
    backup.manifest()
    return backup.finish()


def member_count_bomb(members: int) -> bytes:
    """members empty files, listed by a valid manifest."""
    backup = CraftedBackup()
    for index in range(members):
        backup.file(f"tree/{index:07d}")
    backup.manifest()
    return backup.finish()
