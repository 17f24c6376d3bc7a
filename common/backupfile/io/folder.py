"""Backups in a folder on this host, and writing a file so that a listed backup is always whole.

The bytes go to `.<final name>.<random>.part` beside the final place; only after they are on
disk (file fsync) is the file renamed, and the folder fsynced so that the rename itself
survives a crash. The bytes bypass the page cache where the filesystem allows it
(io/directio.py), or else the disk is asked to start writing every few MiB as they come,
so that the fsync at the end waits for the last few MiB rather than for the whole backup. Any
failure, a cancel or an interrupt removes the temporary file. A crash that gives no chance to
clean up leaves a temporary name that `remove_orphan_temporaries` reaps.

A rekey changes only a file's head, often to one of the same length: that is rewritten in
place, behind a journal. The new head is first stored whole beside the file
(`.<name>.head-journal`, written like any file here), then written over the old one and
synced, and only then is the journal removed. Whatever reaches that file or its folder next
(open, stat, list, prepare, create, replace, rewrite_head) finishes a rewrite that a crash
interrupted, so a torn head is never read; a journal that no longer fits its file (another
size, other bytes after the head) is dropped unused.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import io
import json
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType

from common.backupfile.io.directio import DirectWriter, aligned_buffer
from common.backupfile.io.storage import (
    PLAIN_SUFFIX,
    BackupStorage,
    OpenedFile,
    StoredObject,
    final_names,
    is_backup_file_name,
)
from common.errors import H4Error, InsufficientStorage, StorageFailure

_TEMPORARY_NAME = re.compile(r"\..+\.[0-9a-f]{16}\.part")
_JOURNAL = re.compile(r"\.(.+)\.head-journal")
_JOURNAL_FORMAT = "h4backup head rewrite 1"
# A head is at most 1 MiB (format/age.py); its journal, base64 and all, stays under this.
_MAX_JOURNAL = 2 << 20
# Bytes after the head whose hash ties a journal to its file: the payload's random nonce is
# among them, so no other file matches.
_TAIL_PROBE = 4096
# The errors that mean the filesystem is full, for the bytes or for the user's quota.
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
# Backups hold secrets: only the service's own user may read them.
_FILE_MODE = 0o600
_WRITE_BEHIND = 8 << 20


def backup_leftovers(folder: Path, backup_id: str) -> list[Path]:
    """Every file a write of this backup may leave in folder, whether it exists or not: its
    temporary files (see temporary_name) and the final file, plain or encrypted."""
    names = final_names(backup_id)
    return [*folder.glob(f".{backup_id}{PLAIN_SUFFIX}*.part"),
            *folder.glob(f".{names[-1]}.*.part"),
            *(folder / name for name in names)]


def is_temporary_name(name: str) -> bool:
    """True for names that AtomicFile gives its unfinished files."""
    return _TEMPORARY_NAME.fullmatch(name) is not None


def temporary_name(final_name: str) -> str:
    return f".{final_name}.{secrets.token_hex(8)}.part"


def journal_name(final_name: str) -> str:
    """Where a rewrite of final_name's head keeps the new head until it is on disk."""
    return f".{final_name}.head-journal"


def journaled_name(name: str) -> str | None:
    """The file a head journal belongs to; None for any other name."""
    found = _JOURNAL.fullmatch(name)
    return found.group(1) if found else None


def storage_error(error: OSError, folder: Path) -> H4Error:
    """The task error for an OSError met while storing a backup in folder."""
    if error.errno in NO_SPACE:
        return InsufficientStorage(folder)
    return StorageFailure(error.strerror or str(error))


class _TemporaryWriter:
    """Writer on the temporary file that reports OSErrors as storage errors."""

    def __init__(self, fd: int, folder: Path) -> None:
        self._fd = fd
        self._folder = folder
        self._direct = DirectWriter(fd, aligned_buffer())
        self._written = self._flushed = 0

    def write(self, data: bytes) -> int:
        try:
            self._direct.write(data)
            self._written += len(data)
            if not self._direct.direct and self._written - self._flushed >= _WRITE_BEHIND:
                self._write_behind()
        except OSError as error:
            raise storage_error(error, self._folder) from error
        return len(data)

    def flush(self) -> None:
        """Nothing to do: the last bytes are written on commit, before the fsync."""

    def finish(self) -> None:
        try:
            self._direct.finish()
        except OSError as error:
            raise storage_error(error, self._folder) from error

    def _write_behind(self) -> None:
        # Only starts the writing and does not wait for it: the disk works while the
        # pipeline goes on, instead of all at once in the final fsync.
        start, self._flushed = self._flushed, self._written
        if hasattr(os, "sync_file_range"):
            os.sync_file_range(self._fd, start, self._written - start,
                               os.SYNC_FILE_RANGE_WRITE)


class AtomicFile:
    """Context manager giving a writer whose bytes appear at final_path only on success."""

    def __init__(self, final_path: str | os.PathLike[str], replace: bool = False) -> None:
        self.final_path = Path(final_path)
        self.folder = self.final_path.parent
        self.temporary_path = self.folder / temporary_name(self.final_path.name)
        self.replace = replace  # take the place of a file there, rather than refuse
        self._fd = -1
        self._writer: _TemporaryWriter | None = None

    def __enter__(self) -> _TemporaryWriter:
        if not self.replace and self.final_path.exists():
            raise StorageFailure(f"{self.final_path.name} already exists")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            self._fd = os.open(self.temporary_path, flags, _FILE_MODE)
            os.fchmod(self._fd, _FILE_MODE)  # the umask may have taken bits away
        except OSError as error:
            self._discard()
            raise storage_error(error, self.folder) from error
        self._writer = _TemporaryWriter(self._fd, self.folder)
        return self._writer

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._discard()
            return
        try:
            self._commit()
        except BaseException:
            self._discard()
            raise

    def _commit(self) -> None:
        if self._writer is not None:
            self._writer.finish()
        try:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            if self.replace:
                os.replace(self.temporary_path, self.final_path)
            else:
                _move_without_overwrite(self.temporary_path, self.final_path)
            fsync_folder(self.folder)
        except OSError as error:
            raise storage_error(error, self.folder) from error

    def _discard(self) -> None:
        if self._fd >= 0:
            _close_quietly(self._fd)
            self._fd = -1
        with suppress(FileNotFoundError):
            os.unlink(self.temporary_path)


def _move_without_overwrite(source: Path, target: Path) -> None:
    # Link then unlink rather than rename: a link fails when the target exists, where a rename
    # would silently replace a finished backup.
    try:
        os.link(source, target)
    except FileExistsError:
        raise StorageFailure(f"{target.name} already exists") from None
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        _rename_if_absent(source, target)
        return
    os.unlink(source)


def _rename_if_absent(source: Path, target: Path) -> None:
    """For filesystems without hard links; only another writer of the same id could race."""
    if target.exists():
        raise StorageFailure(f"{target.name} already exists")
    os.rename(source, target)


def fsync_folder(folder: Path) -> None:
    """Make the names in a folder durable (a rename or link into it)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _close_quietly(fd: int) -> None:
    with suppress(OSError):
        os.close(fd)


def remove_orphan_temporaries(
    folder: str | os.PathLike[str], older_than_seconds: float
) -> list[Path]:
    """Removes temporary files left by crashed writers; returns what it removed."""
    deadline = time.time() - older_than_seconds
    with os.scandir(folder) as listing:
        candidates = [Path(e.path) for e in listing if is_temporary_name(e.name)]
    return [path for path in candidates if _remove_if_older(path, deadline)]


def _remove_if_older(path: Path, deadline: float) -> bool:
    # The age test keeps a reaper from removing a file that a running backup is writing.
    try:
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode) or st.st_mtime >= deadline:
            return False
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def roll_forward_head(path: Path) -> bool:
    """Finishes the head rewrite of the file at path that a crash interrupted, if its journal
    is there; whether there was one. Doing it twice does no harm."""
    journal = path.with_name(journal_name(path.name))
    try:
        with open(journal, "rb") as stream:
            data = stream.read(_MAX_JOURNAL + 1)
    except FileNotFoundError:
        return False
    size, tail, head = _parse_journal(data, journal.name)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = -1  # the file went since: nothing to finish, and the journal must not outlive it
    if fd >= 0:
        try:
            if _fits(fd, size, tail, len(head)):
                _write_head(fd, head)
        finally:
            os.close(fd)
    _drop_journal(journal)
    return True


def _parse_journal(data: bytes, name: str) -> tuple[int, str, bytes]:
    """(file size, tail hash, new head) of a journal; StorageFailure when it is none."""
    try:
        entry = json.loads(data) if len(data) <= _MAX_JOURNAL else None
        if not isinstance(entry, dict) or entry.get("format") != _JOURNAL_FORMAT:
            raise ValueError("not a head journal")
        return int(entry["size"]), str(entry["tail_sha256"]), base64.b64decode(entry["head"])
    except (ValueError, KeyError, TypeError) as error:
        # Written whole or not at all, so this is damage, not a crash: the head it would
        # have finished cannot be known, and a reader must not be given a torn one.
        raise StorageFailure(f"{name} cannot be read ({error}); the head rewrite it "
                             "records cannot be finished") from None


def _journal_entry(fd: int, head: bytes) -> bytes:
    size = os.fstat(fd).st_size
    if len(head) >= size:
        raise ValueError("a head rewrite keeps at least one byte of the file after it")
    entry = {"format": _JOURNAL_FORMAT, "size": size, "tail_sha256": _tail_hash(fd, len(head)),
             "head": base64.b64encode(head).decode("ascii")}
    return json.dumps(entry).encode() + b"\n"


def _tail_hash(fd: int, head_length: int) -> str:
    return hashlib.sha256(os.pread(fd, _TAIL_PROBE, head_length)).hexdigest()


def _fits(fd: int, size: int, tail: str, head_length: int) -> bool:
    """Whether the journal was written for this file: same size, same bytes after the head."""
    return os.fstat(fd).st_size == size and _tail_hash(fd, head_length) == tail


def _write_head(fd: int, head: bytes) -> None:
    written = 0
    while written < len(head):
        written += os.pwrite(fd, head[written:], written)
    os.fdatasync(fd)


def _drop_journal(journal: Path) -> None:
    journal.unlink(missing_ok=True)
    fsync_folder(journal.parent)


def rewrite_head_in_place(path: Path, head: bytes) -> None:
    """The first len(head) bytes of the file at path replaced by head, behind a journal."""
    journal = path.with_name(journal_name(path.name))
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        with AtomicFile(journal) as out:
            out.write(_journal_entry(fd, head))
        _write_head(fd, head)
    finally:
        os.close(fd)
    _drop_journal(journal)


class FolderStorage(BackupStorage):
    """Backup files in one folder of this host, readable by the service's user only."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.location = str(self.folder)

    def prepare(self) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name in self._journaled_names():
            roll_forward_head(self.folder / name)

    def create(self, name: str) -> AtomicFile:
        # A journal whose file is gone must not be applied to a new file of that name.
        return AtomicFile(self._current_path(name))

    def replace(self, name: str) -> AtomicFile:
        return AtomicFile(self._current_path(name), replace=True)

    def rewrites_head_in_place(self, old_head_length: int, new_head_length: int) -> bool:
        return old_head_length == new_head_length

    def rewrite_head(self, name: str, old_head_length: int, new_head: bytes) -> None:
        path = self._current_path(name)
        if not self.rewrites_head_in_place(old_head_length, len(new_head)):
            super().rewrite_head(name, old_head_length, new_head)
            return
        try:
            rewrite_head_in_place(path, new_head)
        except FileNotFoundError:
            raise
        except OSError as error:
            raise storage_error(error, self.folder) from error

    @contextmanager
    def open(self, name: str) -> Iterator[OpenedFile]:
        with open(self._current_path(name), "rb") as stream:
            yield OpenedFile(stream, os.fstat(stream.fileno()).st_size)

    @contextmanager
    def open_range(self, name: str, first: int, last: int | None) -> Iterator[OpenedFile]:
        with open(self._current_path(name), "rb") as whole:
            size = os.fstat(whole.fileno()).st_size
            end = size if last is None else min(size, last + 1)
            whole.seek(first)
            length = max(0, end - first)
            yield OpenedFile(io.BufferedReader(_Slice(whole, length)), length)

    def stat(self, name: str) -> StoredObject | None:
        try:
            return self._stat(self._current_path(name))
        except FileNotFoundError:
            return None

    def delete(self, name: str) -> None:
        path = self._path(name)
        path.unlink(missing_ok=True)
        path.with_name(journal_name(name)).unlink(missing_ok=True)

    def list(self) -> Iterator[StoredObject]:
        if not self.folder.is_dir():
            return
        with os.scandir(self.folder) as listing:
            found = [entry.name for entry in listing]
        for name in {journaled_name(name) for name in found} - {None}:
            roll_forward_head(self.folder / name)
        for name in sorted(filter(is_backup_file_name, found)):
            stored = self._stat(self.folder / name)
            if stored is not None:
                yield stored

    def remove_leftovers(self, backup_id: str) -> int:
        removed = 0
        for path in backup_leftovers(self.folder, backup_id):
            if path.exists():
                path.unlink(missing_ok=True)
                removed += 1
            # A file that goes takes its journal: it must not reach a later file of the name.
            path.with_name(journal_name(path.name)).unlink(missing_ok=True)
        return removed

    def remove_orphans(self, older_than_seconds: float) -> list[str]:
        if not self.folder.is_dir():
            return []
        return [p.name for p in remove_orphan_temporaries(self.folder, older_than_seconds)]

    def local_folder(self) -> Path | None:
        return self.folder

    def _path(self, name: str) -> Path:
        # Names come from the catalogue; one that is not a plain file name here is refused
        # rather than followed out of the folder.
        if not name or Path(name).name != name or name.startswith("."):
            raise FileNotFoundError(name)
        return self.folder / name

    def _current_path(self, name: str) -> Path:
        """The path of name, once a head rewrite that a crash interrupted there is finished."""
        path = self._path(name)
        roll_forward_head(path)
        return path

    def _journaled_names(self) -> list[str]:
        with os.scandir(self.folder) as listing:
            return [name for entry in listing if (name := journaled_name(entry.name))]

    @staticmethod
    def _stat(path: Path) -> StoredObject | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        return StoredObject(path.name, st.st_size, st.st_mtime_ns // 1_000_000)


def stored_at(path: str | os.PathLike[str]) -> tuple[FolderStorage, str]:
    """The storage and name of a backup file given by its path, for reading it."""
    path = Path(path)
    return FolderStorage(path.parent), path.name


class _Slice(io.RawIOBase):
    """At most `length` bytes of an open file, from where it stands."""

    def __init__(self, whole: io.BufferedReader, length: int) -> None:
        self._whole, self._left = whole, length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._whole.read(min(len(buffer), self._left))
        self._left -= len(data)
        buffer[: len(data)] = data
        return len(data)
