"""The tar stream inside a backup file, and the manifest that ends it.

The archive is a POSIX (PAX) tar stream that GNU tar and Python's tarfile both read. Each source
is a top-level member named after the source; below it, members are `<source>/<relative path>`
in sorted order. Directories, regular files and symlinks are stored as such; hard links are
stored as separate regular files so that no table of seen inodes has to grow with the tree.

A file that changes while it is read still yields a well-formed member of the size recorded at
open time: a shrunk file is padded with zero bytes, a grown one cut at that size, and the task
gets a FileChanged warning. A file that vanished or cannot be read is left out with a warning.

The last member is `h4backup-manifest.jsonl`, one ASCII JSON object per line:

    {"format": "h4backup-manifest", "version": 1, "backupId": "<id>",
     "createdAt": <ms since epoch>, "sources": ["<name>", ...]}
    {"path": "<member name>", "type": "file" | "dir" | "symlink", "size": <bytes stored>,
     "mode": <permission bits>, "mtime": <seconds since epoch>,
     "sha256": "<hex of the bytes stored>" (files only), "target": "<link target>" (symlinks)}

It lists every member before it in archive order, so a verify or a restore can prove that an
archive is complete and that every file's bytes are the ones read at backup time.
"""

from __future__ import annotations

import errno
import functools
import grp
import hashlib
import json
import os
import pwd
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import IO, BinaryIO

from common.errors import BackupCorrupted, FileChanged, FileUnreadable, FileVanished, H4Error
from worker.sources import Entry

MANIFEST_NAME = "h4backup-manifest.jsonl"
MANIFEST_FORMAT = "h4backup-manifest"
MANIFEST_VERSION = 1
COPY_SIZE = 1 << 20
_MANIFEST_MEMORY = 1 << 20
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

WarningSink = Callable[[H4Error], None]


def _nothing(*_args: object) -> None:
    pass


@dataclass(frozen=True)
class ManifestHeader:
    backup_id: str
    created_at: int
    sources: tuple[str, ...]


@dataclass(frozen=True)
class ManifestEntry:
    path: str
    type: str
    size: int
    mode: int
    mtime: int
    sha256: str | None = None
    target: str | None = None


class GuardedReader:
    """Reads exactly `size` bytes of an open file, whatever the file does meanwhile."""

    def __init__(
        self,
        raw: IO[bytes],
        size: int,
        on_read: Callable[[int], None] = _nothing,
        checkpoint: Callable[[], None] = _nothing,
    ) -> None:
        self.sha256 = hashlib.sha256()
        self.shrank = False
        self.read_error: OSError | None = None
        self._raw, self._remaining = raw, size
        self._on_read, self._checkpoint = on_read, checkpoint

    def read(self, n: int = -1) -> bytes:
        self._checkpoint()
        wanted = self._remaining if n < 0 else min(n, self._remaining)
        data = self._read_source(wanted)
        if len(data) < wanted:
            self.shrank = True
            data += bytes(wanted - len(data))
        self._remaining -= wanted
        self.sha256.update(data)
        self._on_read(wanted)
        return data

    def grew(self) -> bool:
        """True if the file has bytes past the size it had when it was opened."""
        return not (self.shrank or self.read_error) and self._read_source(1) != b""

    def _read_source(self, wanted: int) -> bytes:
        if self.shrank or self.read_error:
            return b""
        try:
            return _read_up_to(self._raw, wanted)
        except OSError as error:
            self.read_error = error
            return b""


def _read_up_to(raw: IO[bytes], wanted: int) -> bytes:
    data = raw.read(wanted)
    while data and len(data) < wanted:
        more = raw.read(wanted - len(data))
        if not more:
            break
        data += more
    return data


class ArchiveWriter:
    """Writes walk entries as a tar stream to a sink, then the manifest, then the tar end."""

    def __init__(
        self,
        sink: BinaryIO,
        backup_id: str,
        source_names: Sequence[str],
        created_at: int,
        on_warning: WarningSink = _nothing,
        on_read: Callable[[int], None] = _nothing,
        checkpoint: Callable[[], None] = _nothing,
    ) -> None:
        self.files = self.source_bytes = 0
        self._created_at = created_at
        self._on_warning, self._on_read, self._checkpoint = on_warning, on_read, checkpoint
        # Both are closed by close() or abort(); the writer is itself a context manager.
        self._tar = _open_tar_stream(sink)
        self._manifest = tempfile.SpooledTemporaryFile(max_size=_MANIFEST_MEMORY)  # noqa: SIM115
        self._write_line({"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
                          "backupId": backup_id, "createdAt": created_at,
                          "sources": list(source_names)})

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
        info = _manifest_info(self._manifest.tell(), self._created_at)
        self._manifest.seek(0)
        self._tar.addfile(info, self._manifest)
        self._tar.close()
        self._manifest.close()

    def abort(self) -> None:
        """Drops the manifest; whatever reached the sink is to be thrown away by the caller."""
        self._manifest.close()
        # Closing marks tarfile's stream closed, so that its finaliser writes nothing later.
        with suppress(Exception):
            self._tar.close()

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
        self._tar.addfile(info)
        self._forget_members()
        self._record(info, kind)

    def _add_file(self, entry: Entry) -> None:
        try:
            fd = os.open(entry.path, _OPEN_FLAGS)
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
        self._record(info, "file", reader.sha256.hexdigest())

    def _copy_file(
        self, name: str, raw: IO[bytes], opened: os.stat_result
    ) -> tuple[tarfile.TarInfo, GuardedReader]:
        info = _tar_info(name, opened, tarfile.REGTYPE)
        info.size = opened.st_size
        reader = GuardedReader(raw, info.size, self._on_read, self._checkpoint)
        self._tar.addfile(info, reader)
        self._forget_members()
        self.files += 1
        self.source_bytes += info.size
        return info, reader

    def _forget_members(self) -> None:
        # tarfile keeps every TarInfo it wrote; for a stream that is never read back, that
        # list would only grow with the number of files.
        self._tar.members.clear()

    def _record(self, info: tarfile.TarInfo, kind: str, sha256: str | None = None) -> None:
        item: dict[str, object] = {"path": info.name, "type": kind, "size": info.size,
                                   "mode": info.mode, "mtime": info.mtime}
        if sha256 is not None:
            item["sha256"] = sha256
        if kind == "symlink":
            item["target"] = info.linkname
        self._write_line(item)

    def _write_line(self, item: dict[str, object]) -> None:
        # ASCII JSON: names that are not valid UTF-8 survive as \\udcXX escapes.
        line = json.dumps(item, ensure_ascii=True, separators=(",", ":"))
        self._manifest.write(line.encode("ascii") + b"\n")


def _open_tar_stream(sink: BinaryIO) -> tarfile.TarFile:
    # Stream mode never seeks; big buffers keep tarfile's own copying cheap.
    return tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT,
                        bufsize=COPY_SIZE, copybufsize=COPY_SIZE,
                        encoding="utf-8", errors="surrogateescape")


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


def read_manifest(fileobj: BinaryIO) -> tuple[ManifestHeader, Iterator[ManifestEntry]]:
    """Parses a manifest; entries are read lazily, so huge manifests stay out of memory."""
    header = _parse_line(fileobj.readline(), 1)
    if header.get("format") != MANIFEST_FORMAT or header.get("version") != MANIFEST_VERSION:
        raise BackupCorrupted("manifest header is not an h4backup manifest version 1")
    try:
        parsed = ManifestHeader(str(header["backupId"]), int(header["createdAt"]),
                                tuple(str(name) for name in header["sources"]))
    except (KeyError, TypeError, ValueError) as error:
        raise BackupCorrupted(f"manifest header: {error}") from error
    return parsed, _parse_entries(fileobj)


def _parse_entries(fileobj: BinaryIO) -> Iterator[ManifestEntry]:
    for line_number, line in enumerate(fileobj, start=2):
        if line.strip():
            yield _entry_from(_parse_line(line, line_number), line_number)


def _entry_from(item: dict, line_number: int) -> ManifestEntry:
    try:
        return ManifestEntry(str(item["path"]), str(item["type"]), int(item["size"]),
                             int(item["mode"]), int(item["mtime"]),
                             item.get("sha256"), item.get("target"))
    except (KeyError, TypeError, ValueError) as error:
        raise BackupCorrupted(f"manifest line {line_number}: {error}") from error


def _parse_line(line: bytes, line_number: int) -> dict:
    try:
        item = json.loads(line)
    except ValueError as error:
        raise BackupCorrupted(f"manifest line {line_number}: {error}") from error
    if not isinstance(item, dict):
        raise BackupCorrupted(f"manifest line {line_number}: not a JSON object")
    return item
