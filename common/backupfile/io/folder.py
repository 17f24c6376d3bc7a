"""Backups in a folder on this host, and writing a file so that a listed backup is always whole.

The bytes go to `.<final name>.<random>.part` beside the final place; only after they are on
disk (file fsync) is the file renamed, and the folder fsynced so that the rename itself
survives a crash. The bytes bypass the page cache where the filesystem allows it
(io/directio.py), or else the disk is asked to start writing every few MiB as they come,
so that the fsync at the end waits for the last few MiB rather than for the whole backup. Any
failure, a cancel or an interrupt removes the temporary file. A crash that gives no chance to
clean up leaves a temporary name that `remove_orphan_temporaries` reaps.
"""

from __future__ import annotations

import errno
import io
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

    def __init__(self, final_path: str | os.PathLike[str]) -> None:
        self.final_path = Path(final_path)
        self.folder = self.final_path.parent
        self.temporary_path = self.folder / temporary_name(self.final_path.name)
        self._fd = -1
        self._writer: _TemporaryWriter | None = None

    def __enter__(self) -> _TemporaryWriter:
        if self.final_path.exists():
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


class FolderStorage(BackupStorage):
    """Backup files in one folder of this host, readable by the service's user only."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.location = str(self.folder)

    def prepare(self) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    def create(self, name: str) -> AtomicFile:
        return AtomicFile(self._path(name))

    @contextmanager
    def open(self, name: str) -> Iterator[OpenedFile]:
        with open(self._path(name), "rb") as stream:
            yield OpenedFile(stream, os.fstat(stream.fileno()).st_size)

    @contextmanager
    def open_range(self, name: str, first: int, last: int | None) -> Iterator[OpenedFile]:
        with open(self._path(name), "rb") as whole:
            size = os.fstat(whole.fileno()).st_size
            end = size if last is None else min(size, last + 1)
            whole.seek(first)
            length = max(0, end - first)
            yield OpenedFile(io.BufferedReader(_Slice(whole, length)), length)

    def stat(self, name: str) -> StoredObject | None:
        try:
            st = self._path(name).stat()
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        return StoredObject(name, st.st_size, st.st_mtime_ns // 1_000_000)

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def list(self) -> Iterator[StoredObject]:
        if not self.folder.is_dir():
            return
        with os.scandir(self.folder) as listing:
            names = [entry.name for entry in listing if is_backup_file_name(entry.name)]
        for name in sorted(names):
            found = self.stat(name)
            if found is not None:
                yield found

    def remove_leftovers(self, backup_id: str) -> int:
        removed = 0
        for path in backup_leftovers(self.folder, backup_id):
            if path.exists():
                path.unlink(missing_ok=True)
                removed += 1
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
