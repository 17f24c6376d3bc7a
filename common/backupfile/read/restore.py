"""Restoring a backup into a new folder under the restore root, member by member.

The stored file is read once as a stream (age when encrypted, zstd, tar), through the same
checked pass as a verify (read/unpack.py): no absolute names, no `..`, no symlink leaving the
tree, no member below a symlink, no hard links or special files. Members are written by hand,
never by tarfile's extraction, into a private staging folder beside the final one. Only once
every entry has matched the manifest, and every file and folder is on disk, is the staging folder
renamed into place; on any failure it is removed, so the restore root never holds a partial
restore.

Every member is charged to the restore filesystem before it is written (read/freespace.py):
once the charges pass the free space found at the start, less a reserve, the restore stops with
RestoreTooLarge, so a small file that expands to terabytes never fills the disk.

File bytes are written on a background thread while the archive is read; each finished file
is handed to the disk at once (its writing starts, nothing waits for it), and a single sync of
the filesystem before the rename makes them all durable, rather than one fsync per file.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import struct
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from common.backupfile.format.members import safe_parts
from common.backupfile.io.directio import DirectWriter, aligned_buffer
from common.backupfile.io.folder import NO_SPACE, fsync_folder
from common.backupfile.io.handoff import Consumer
from common.backupfile.io.progress import Reporter
from common.backupfile.io.storage import SAFE_BACKUP_ID, BackupStorage
from common.backupfile.read.freespace import SpaceGuard
from common.backupfile.read.unpack import ArchiveScan, backup_errors, open_archive
from common.backupfile.read.verify import StoredFile, open_stored
from common.errors import (
    ArchiveLimitExceeded,
    InsufficientStorage,
    StorageFailure,
    UnsafeArchiveMember,
)

# A restore folder is named like a backup file: nothing that climbs out of the root or hides.
_TARGET_NAME = SAFE_BACKUP_ID
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Restored files keep their permission bits, never setuid, setgid or sticky.
_PERMISSIONS = 0o777
# Blocks of at most 1 MiB, and file ends; each holds one open file at most.
_WRITES_IN_FLIGHT = 32
# Smaller files go through the page cache whole: their aligned part would be too small to pay.
_DIRECT_FROM = 128 << 10
_SYNCFS = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)
# Folders wait in memory for their modes, packed (mode, mtime, then the path). The budget is
# far more than any tree needs (a million folders of 50-byte paths), yet names of 4 KiB
# cannot make the folders of an archive cost gigabytes.
_FOLDER = struct.Struct("<Id")
_MAX_FOLDER_BYTES = 64 << 20


@dataclass(frozen=True)
class RestoreJob:
    backup_id: str
    storage: BackupStorage
    file_name: str  # under which the storage keeps it
    restore_root: Path  # the restore goes into a new folder under it
    passphrase: str | None = None
    identities: tuple[str, ...] = ()
    max_work_factor: int = 20
    target_name: str | None = None  # default: f"{backup_id}-{UTC timestamp}"
    expected_hash: str | None = None  # catalogue SHA-512; when given, checked in the same pass

    def __post_init__(self) -> None:
        if self.target_name is not None and not _TARGET_NAME.fullmatch(self.target_name):
            raise ValueError(f"unsafe restore folder name {self.target_name!r}")
        if not _TARGET_NAME.fullmatch(self.backup_id):
            raise ValueError(f"unsafe backup id {self.backup_id!r}")


@dataclass(frozen=True)
class RestoreOutcome:
    backup_id: str
    path: Path  # the folder the backup was restored into
    files: int  # regular files
    bytes: int  # bytes of file content


def run_restore(job: RestoreJob, reporter: Reporter) -> RestoreOutcome:
    """Restores job's backup into a new folder; the folder exists only if this returns."""
    final = job.restore_root / (job.target_name or _default_name(job.backup_id))
    staging = job.restore_root / f".{final.name}.{secrets.token_hex(8)}.staging"
    with _storage_errors(job.restore_root):
        job.restore_root.mkdir(parents=True, exist_ok=True)
        _refuse_existing(final)
        # Private until it is complete; it keeps that mode once it becomes the restore folder.
        os.mkdir(staging, 0o700)
    try:
        with _storage_errors(job.restore_root):
            scan, stored = _extract(job, staging, reporter)
            _publish(staging, final)
    except BaseException:
        _remove_tree(staging)
        raise
    stored.watch.finish()
    return RestoreOutcome(job.backup_id, final, scan.files, scan.bytes)


def _default_name(backup_id: str) -> str:
    now = datetime.now(UTC)
    return f"{backup_id}-{now:%Y%m%dT%H%M%S}.{now.microsecond // 1000:03d}Z"


def _extract(job: RestoreJob, staging: Path, reporter: Reporter) -> tuple[ArchiveScan, StoredFile]:
    hashing = job.expected_hash is not None
    with open_stored(job.storage, job.file_name, job.backup_id, reporter, hashing) as stored:
        with (backup_errors(),
              open_archive(stored, job.passphrase, job.identities,
                           job.max_work_factor) as scan,
              _TreeWriter(staging, scan, SpaceGuard(job.restore_root)) as writer):
            for member in scan.members():
                writer.add(member)
            scan.finish()
        if job.expected_hash is not None:
            stored.check_hash(job.expected_hash)
        writer.settle_folders()
    return scan, stored


class _TreeWriter:
    """Writes checked members below the staging folder; folders get their modes at the end."""

    def __init__(self, staging: Path, scan: ArchiveScan, space: SpaceGuard) -> None:
        self._staging, self._scan, self._space = staging, scan, space
        self._folders: list[bytes] = []
        self._folder_bytes = 0
        self._files = _FileWriter(space)

    def __enter__(self) -> _TreeWriter:
        self._files.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self._files.__exit__(exc_type, *rest)

    def add(self, member: tarfile.TarInfo) -> None:
        relative = "/".join(safe_parts(member.name))
        path = os.path.join(self._staging, relative)
        self._space.charge(member)
        try:
            if member.isdir():
                os.mkdir(path, 0o700)
                self._keep_folder(relative, member)
            elif member.issym():
                os.symlink(member.linkname, path)
                os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)
            else:
                self._files.add(path, member, self._scan)
        except FileExistsError:
            raise UnsafeArchiveMember(member.name, "appears twice in the archive") from None

    def _keep_folder(self, relative: str, member: tarfile.TarInfo) -> None:
        packed = (_FOLDER.pack(member.mode & _PERMISSIONS, member.mtime)
                  + relative.encode("utf-8", "surrogateescape"))
        self._folder_bytes += len(packed)
        if self._folder_bytes > _MAX_FOLDER_BYTES:
            raise ArchiveLimitExceeded(f"folder names: more than {_MAX_FOLDER_BYTES} bytes")
        self._folders.append(packed)

    def settle_folders(self) -> None:
        """Gives folders their modes and mtimes, deepest first."""
        # Only now: adding entries changes a folder's mtime, and a read-only mode set earlier
        # would have kept its entries from being written.
        for packed in sorted(self._folders, key=lambda f: -f.count(b"/", _FOLDER.size)):
            mode, mtime = _FOLDER.unpack_from(packed)
            relative = packed[_FOLDER.size:].decode("utf-8", "surrogateescape")
            fd = os.open(os.path.join(self._staging, relative), _FOLDER_FLAGS)
            try:
                os.utime(fd, (mtime, mtime))
                os.fchmod(fd, mode)
            finally:
                os.close(fd)


class _FileWriter:
    """Regular files, opened on the calling thread and written on a background one.

    Opening here refuses a name that appears twice at once, with the member to blame; a
    failure to write comes back to the caller at its next file or block. Large files bypass
    the page cache (io/directio.py) through one aligned buffer, used by one file at a time.
    """

    def __init__(self, space: SpaceGuard) -> None:
        self._space = space
        self._writes: Consumer[tuple[DirectWriter, memoryview | tarfile.TarInfo]] = Consumer(
            self._apply, "restore-writer", _WRITES_IN_FLIGHT)
        self._buffer = aligned_buffer()
        self._open: dict[DirectWriter, int] = {}

    def __enter__(self) -> _FileWriter:
        self._writes.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        try:
            self._writes.__exit__(exc_type, *rest)
        finally:
            for fd in self._open.values():
                _close_quietly(fd)

    def add(self, path: str, member: tarfile.TarInfo, scan: ArchiveScan) -> None:
        fd = os.open(path, _FILE_FLAGS, 0o600)
        writer = DirectWriter(fd, self._buffer, direct=member.size >= _DIRECT_FROM)
        self._open[writer] = fd
        scan.copy(member, lambda block: self._write(writer, block))
        self._writes.put((writer, member))

    def _write(self, writer: DirectWriter, block: memoryview) -> None:
        self._space.wrote(len(block))
        self._writes.put((writer, block))

    def _apply(self, item: tuple[DirectWriter, memoryview | tarfile.TarInfo]) -> None:
        writer, what = item
        if isinstance(what, tarfile.TarInfo):
            writer.finish()
            _finish_file(self._open.pop(writer), what)
        else:
            _write_all(writer, what)


def _write_all(writer: DirectWriter, block: memoryview) -> None:
    writer.write(block)


def _finish_file(fd: int, member: tarfile.TarInfo) -> None:
    os.fchmod(fd, member.mode & _PERMISSIONS)
    os.utime(fd, (member.mtime, member.mtime))
    if hasattr(os, "sync_file_range"):
        # The disk starts on what the page cache holds of this file now, instead of on all
        # files at the final sync.
        os.sync_file_range(fd, 0, 0, os.SYNC_FILE_RANGE_WRITE)
    os.close(fd)


def _close_quietly(fd: int) -> None:
    with suppress(OSError):
        os.close(fd)


def _refuse_existing(final: Path) -> None:
    if os.path.lexists(final):
        raise StorageFailure(final.name, msg=f"The restore folder {final.name} already exists.")


def _publish(staging: Path, final: Path) -> None:
    """Makes the finished tree durable, then moves it into place and makes the move durable."""
    fd = os.open(staging, _FOLDER_FLAGS)
    try:
        _sync_filesystem(fd)
    finally:
        os.close(fd)
    # rename() would silently replace an empty folder of that name.
    _refuse_existing(final)
    os.rename(staging, final)
    fsync_folder(final.parent)


def _sync_filesystem(fd: int) -> None:
    """Every file and folder of the filesystem holding fd on disk: one journal commit for the
    whole restore, where an fsync per file would commit once per file."""
    if _SYNCFS is None:
        os.sync()
    elif _SYNCFS(fd) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


@contextmanager
def _storage_errors(root: Path) -> Iterator[None]:
    """OSErrors met while writing the restore, as task errors naming the restore root."""
    try:
        yield
    except OSError as error:
        if error.errno in NO_SPACE:
            raise InsufficientStorage(
                root, msg=f"Not enough space to restore the backup in {root}.") from error
        reason = error.strerror or str(error)
        raise StorageFailure(
            reason, msg=f"Could not write the restored files: {reason}") from error


def _remove_tree(path: Path) -> None:
    """Removes a staging folder, even one whose folders already got read-only modes."""
    with suppress(OSError):
        pending = [str(path)]
        while pending:
            folder = pending.pop()
            os.chmod(folder, 0o700)
            with os.scandir(folder) as entries:
                pending.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))
    shutil.rmtree(path, ignore_errors=True)
