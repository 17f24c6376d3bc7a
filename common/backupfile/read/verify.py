"""Verifying a stored backup, and the stored file as both a verify and a restore read it.

A verify always compares the SHA-512 of the stored bytes with the catalogue. When it can open
the archive (a plain backup, or the password or identities of an encrypted one), it also reads
the whole archive in the same pass over the file (read/unpack.py): age, zstd, tar, every
member checked for safety and every file's hash recomputed, then the whole proved against
the manifest that ends the archive. Nothing is written to disk; read/restore.py runs the
same pass and writes the members as they come.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from common.backupfile.format.age import AGE_MAGIC
from common.backupfile.io.blocks import COPY_SIZE
from common.backupfile.io.handoff import Consumer
from common.backupfile.io.hashing import format_sha512
from common.backupfile.io.progress import Reporter, Watch
from common.backupfile.io.storage import BackupStorage
from common.backupfile.read.unpack import ArchiveScan, backup_errors, open_archive
from common.errors import (
    ArchiveLimitExceeded,
    BackupCorrupted,
    BackupNotFound,
    StorageFailure,
    WrongPassword,
)

HASH_MISMATCH = "stored bytes do not match the catalogue hash"
# Reads of up to 1 MiB waiting for the hashing thread: a few MiB at most.
_BLOCKS_HASHED_BEHIND = 8


@dataclass(frozen=True)
class VerifyJob:
    backup_id: str
    storage: BackupStorage
    file_name: str  # under which the storage keeps it
    expected_hash: str  # "SHA-512:AB:CD:..." from the catalogue
    passphrase: str | None = None
    identities: tuple[str, ...] = ()
    max_work_factor: int = 20


@dataclass(frozen=True)
class VerifyOutcome:
    backup_id: str
    hash_ok: bool
    content_checked: bool  # False when an encrypted backup came without password or identity
    files: int
    bytes: int


def run_verify(job: VerifyJob, reporter: Reporter) -> VerifyOutcome:
    """Checks the stored bytes, and the archive inside them when it can be opened."""
    with open_stored(job.storage, job.file_name, job.backup_id, reporter,
                     hashing=True) as stored:
        readable = not stored.encrypted() or job.passphrase is not None or bool(job.identities)
        scan = _check_content(job, stored) if readable else None
        stored.check_hash(job.expected_hash)
    stored.watch.finish()
    files, size = (scan.files, scan.bytes) if scan else (0, 0)
    return VerifyOutcome(job.backup_id, True, scan is not None, files, size)


def _check_content(job: VerifyJob, stored: StoredFile) -> ArchiveScan:
    # A damaged header can look like a wrong password, or declare a size past a limit: the
    # stored hash tells these apart.
    try:
        with backup_errors(), open_archive(stored, job.passphrase, job.identities,
                                           job.max_work_factor) as scan:
            for member in scan.members():
                if member.isreg():
                    scan.copy(member, _discard)
            scan.finish()
    except (WrongPassword, BackupCorrupted, ArchiveLimitExceeded) as error:
        stored.check_hash(job.expected_hash, cause=error)
        raise
    return scan


def _discard(_block: bytes) -> None:
    pass


class StoredFile:
    """The backup file, read once: counted for progress and, when asked, hashed with SHA-512.

    The hash runs on a thread of its own, fed the bytes as they are read: the thread reading
    the file also decrypts and decompresses it, and hashing there too made it the one that
    every other stage waited for. Use as a context manager, which ends that thread.
    """

    def __init__(self, raw: io.BufferedReader, watch: Watch, hashing: bool) -> None:
        self.watch = watch
        self._raw = raw
        self._sha512 = hashlib.sha512() if hashing else None
        self._hashing = (Consumer(self._sha512.update, "backup-sha512", _BLOCKS_HASHED_BEHIND)
                         if self._sha512 is not None else None)

    def __enter__(self) -> StoredFile:
        if self._hashing is not None:
            self._hashing.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if self._hashing is not None:
            hashing, self._hashing = self._hashing, None
            hashing.__exit__(exc_type, *rest)

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._raw.read(size)
        except OSError as error:
            raise read_failure(error) from error
        if self._hashing is not None and data:
            # Bytes objects, never changed: the hashing thread may take them as they are.
            self._hashing.put(data)
        self.watch.advance(len(data))
        return data

    def encrypted(self) -> bool:
        return self._raw.peek(len(AGE_MAGIC))[: len(AGE_MAGIC)] == AGE_MAGIC

    def check_hash(self, expected: str, cause: BaseException | None = None) -> None:
        """Hashes what is left of the file; BackupCorrupted unless the whole matches expected."""
        if self._sha512 is None:
            raise ValueError("this file was opened without hashing")
        while self.read(COPY_SIZE):
            self.watch.checkpoint()
        self.__exit__(None, None, None)
        if format_sha512(self._sha512.digest()) != expected.strip().upper():
            raise BackupCorrupted(HASH_MISMATCH) from cause


def read_failure(error: OSError) -> StorageFailure:
    """The task error for an OSError met while reading a stored backup."""
    reason = error.strerror or str(error)
    return StorageFailure(reason, msg=f"Could not read the backup file: {reason}")


@contextmanager
def open_stored(
    storage: BackupStorage, file_name: str, backup_id: str, reporter: Reporter,
    hashing: bool = False,
) -> Iterator[StoredFile]:
    """The stored file of backup_id, with progress reported as its bytes are consumed."""
    with contextlib.ExitStack() as stack:
        try:
            stored = stack.enter_context(storage.open(file_name))
        except FileNotFoundError:
            raise BackupNotFound(backup_id) from None
        except OSError as error:
            raise read_failure(error) from error
        yield stack.enter_context(StoredFile(stored.stream, Watch(reporter, stored.size),
                                             hashing))
