"""The tar stream inside a backup file, and the manifest that ends it.

The archive is a POSIX (PAX) tar stream that GNU tar and Python's tarfile both read. Each source
is a top-level member named after the source; below it, members are `<source>/<relative path>`
in sorted order. Directories, regular files and symlinks are stored as such; hard links are
stored as separate regular files so that no table of seen inodes has to grow with the tree.

A file that changes while it is read still yields a well-formed member of the size recorded at
open time: a shrunk file is padded with zero bytes, a grown one cut at that size, and the task
gets a FileChanged warning. A file that vanished or cannot be read is left out with a warning.

The stream opens with a PAX global header naming the file hash (format/filehash.py), and its
last member is the manifest (format/manifest.py), listing every member before it with each
file's hash, so that a verify or a restore can prove the archive whole.
"""

from __future__ import annotations

import errno
import functools
import grp
import os
import pwd
import stat
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from typing import IO, BinaryIO

from common.backupfile.format.filehash import CURRENT, FileHasher, global_records, new_hasher
from common.backupfile.format.manifest import MANIFEST_NAME, encode_line, header_line
from common.backupfile.format.tarstream import TarStream
from common.backupfile.io.blocks import COPY_SIZE
from common.backupfile.write.sources import SOURCE_FILE_FLAGS, Entry
from common.errors import FileChanged, FileUnreadable, FileVanished, H4Error

_MANIFEST_MEMORY = 1 << 20

WarningSink = Callable[[H4Error], None]


def _nothing(*_args: object) -> None:
    pass


class GuardedReader:
    """Reads exactly `size` bytes of an open file, whatever the file does meanwhile."""

    def __init__(
        self,
        raw: IO[bytes],
        size: int,
        on_read: Callable[[int], None] = _nothing,
        checkpoint: Callable[[], None] = _nothing,
        file_hash: str = CURRENT,
    ) -> None:
        self.hasher: FileHasher = new_hasher(file_hash)
        self.shrank = False
        self.read_error: OSError | None = None
        self._raw, self._remaining = raw, size
        self._on_read, self._checkpoint = on_read, checkpoint

    def read(self, n: int = -1) -> bytes:
        data = bytearray(self._remaining if n < 0 else min(n, self._remaining))
        self._take(memoryview(data), self._read_into_by_read)
        return bytes(data)

    def readinto(self, target: memoryview) -> int:
        """Fills target with the next bytes, as many as remain and at most its length."""
        return self._take(target[:min(len(target), self._remaining)], self._raw.readinto)

    def grew(self) -> bool:
        """True if the file has bytes past the size it had when it was opened."""
        return self._fill(memoryview(bytearray(1)), self._read_into_by_read) > 0

    def _take(self, view: memoryview, read_into: Callable[[memoryview], int | None]) -> int:
        """Fills view: from the file as far as it goes, then with zeros; hashed, counted."""
        self._checkpoint()
        got = self._fill(view, read_into)
        if got < len(view):
            self.shrank = True
            view[got:] = bytes(len(view) - got)
        self._remaining -= len(view)
        self.hasher.update(view)
        self._on_read(len(view))
        return len(view)

    def _fill(self, view: memoryview, read_into: Callable[[memoryview], int | None]) -> int:
        got = 0
        if self.shrank or self.read_error:
            return got
        try:
            while got < len(view) and (more := read_into(view[got:])):
                got += more
        except OSError as error:
            self.read_error = error
        return got

    def _read_into_by_read(self, view: memoryview) -> int:
        # For raw files that only offer read().
        data = self._raw.read(len(view))
        view[:len(data)] = data
        return len(data)


class ArchiveWriter:
    """Writes walk entries as a tar stream to a sink, then the manifest, then the tar end.

    The sink gets large writes of a buffer that is reused once each write returns.
    """

    def __init__(
        self,
        sink: BinaryIO,
        backup_id: str,
        source_names: Sequence[str],
        created_at: int,
        on_warning: WarningSink = _nothing,
        on_read: Callable[[int], None] = _nothing,
        checkpoint: Callable[[], None] = _nothing,
        file_hash: str = CURRENT,
    ) -> None:
        self.files = self.source_bytes = 0
        self._file_hash = file_hash
        self._created_at = created_at
        self._on_warning, self._on_read, self._checkpoint = on_warning, on_read, checkpoint
        self._tar = TarStream(sink, COPY_SIZE)
        self._tar.write(tarfile.TarInfo.create_pax_global_header(global_records(file_hash)))
        # Closed by close() or abort(); the writer is itself a context manager.
        self._manifest = tempfile.SpooledTemporaryFile(max_size=_MANIFEST_MEMORY)  # noqa: SIM115
        self._manifest.write(header_line(backup_id, created_at, list(source_names), file_hash))

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def add(self, entry: Entry) -> None:
        self._checkpoint()
        if entry.kind == "file":
            self._add_file(entry)
        elif entry.kind == "dir":
            self._add_plain(_tar_info(entry.archive_name, entry.stat, tarfile.DIRTYPE), "dir")
        elif entry.kind == "symlink":
            self._add_symlink(entry)
        else:
            raise ValueError(f"cannot archive an entry of kind {entry.kind!r}")

    def close(self) -> None:
        """Appends the manifest and ends the tar stream; the sink itself stays open."""
        self._tar.header(_manifest_info(self._manifest.tell(), self._created_at))
        self._manifest.seek(0)
        while chunk := self._manifest.read(COPY_SIZE):
            self._tar.write(chunk)
        self._tar.pad()
        self._tar.end()
        self._manifest.close()

    def abort(self) -> None:
        """Drops the manifest; whatever reached the sink is to be thrown away by the caller."""
        self._manifest.close()

    def _add_symlink(self, entry: Entry) -> None:
        try:
            target = os.readlink(entry.path)
        except OSError as error:
            self._on_warning(_access_warning(entry.archive_name, error))
            return
        info = _tar_info(entry.archive_name, entry.stat, tarfile.SYMTYPE)
        info.linkname = target
        self._add_plain(info, "symlink")

    def _add_plain(self, info: tarfile.TarInfo, kind: str) -> None:
        self._tar.header(info)
        self._record(info, kind)

    def _add_file(self, entry: Entry) -> None:
        try:
            fd = os.open(entry.path, SOURCE_FILE_FLAGS)
        except OSError as error:
            self._on_warning(_access_warning(entry.archive_name, error))
            return
        with open(fd, "rb", buffering=0) as raw:
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode):
                self._on_warning(FileChanged(entry.archive_name))
                return
            info, reader = self._copy_file(entry.archive_name, raw, opened)
            warning = _read_warning(entry.archive_name, reader, opened, os.fstat(fd))
        if warning is not None:
            self._on_warning(warning)
        self._record(info, "file", reader.hasher.hexdigest())

    def _copy_file(
        self, name: str, raw: IO[bytes], opened: os.stat_result
    ) -> tuple[tarfile.TarInfo, GuardedReader]:
        info = _tar_info(name, opened, tarfile.REGTYPE)
        info.size = opened.st_size
        self._tar.header(info)
        reader = GuardedReader(raw, info.size, self._on_read, self._checkpoint,
                               self._file_hash)
        # Straight from the file into the stream's buffer: no copy on the way.
        remaining = info.size
        while remaining:
            got = reader.readinto(self._tar.reserve(min(remaining, COPY_SIZE)))
            self._tar.commit(got)
            remaining -= got
        self._tar.pad()
        self.files += 1
        self.source_bytes += info.size
        return info, reader

    def _record(self, info: tarfile.TarInfo, kind: str, digest: str | None = None) -> None:
        item: dict[str, object] = {"path": info.name, "type": kind, "size": info.size,
                                   "mode": info.mode, "mtime": info.mtime}
        if digest is not None:
            item[self._file_hash] = digest
        if kind == "symlink":
            item["target"] = info.linkname
        self._manifest.write(encode_line(item))


def _access_warning(name: str, error: OSError) -> H4Error:
    if isinstance(error, FileNotFoundError):
        return FileVanished(name)
    # ELOOP: a file became a symlink since the walk saw it; EINVAL: a symlink stopped being one.
    if error.errno in (errno.ELOOP, errno.EINVAL):
        return FileChanged(name)
    return FileUnreadable(name, error.strerror or str(error))


def _read_warning(
    name: str, reader: GuardedReader, opened: os.stat_result, closed: os.stat_result
) -> H4Error | None:
    if reader.read_error is not None:
        return FileUnreadable(name, reader.read_error.strerror or str(reader.read_error))
    moved = (opened.st_size, opened.st_mtime_ns) != (closed.st_size, closed.st_mtime_ns)
    if reader.shrank or reader.grew() or moved:
        return FileChanged(name)
    return None


def _tar_info(name: str, st: os.stat_result, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, stat.S_IMODE(st.st_mode), int(st.st_mtime)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname, info.gname = _owner_names(st.st_uid, st.st_gid)
    return info


def _manifest_info(size: int, created_at: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(MANIFEST_NAME)
    info.size, info.mode, info.mtime = size, 0o600, created_at // 1000
    info.uid, info.gid = os.getuid(), os.getgid()
    info.uname, info.gname = _owner_names(info.uid, info.gid)
    return info


@functools.lru_cache(maxsize=256)
def _owner_names(uid: int, gid: int) -> tuple[str, str]:
    """User and group names, looked up once per owner rather than once per file."""
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = ""
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = ""
    return user, group
