"""The second copy of a backup: its stored bytes streamed from one store to another, proved
by their SHA-512 before the copy gets its final name and again as the target holds them."""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from typing import BinaryIO

from common.backupfile.io.blocks import COPY_SIZE
from common.backupfile.io.hashing import format_sha512, sha512_of_stream
from common.backupfile.io.progress import Reporter, Watch
from common.backupfile.io.storage import BackupStorage, BackupWriter
from common.errors import BackupCorrupted, BackupNotFound, StorageFailure


@dataclass(frozen=True)
class CopyJob:
    backup_id: str
    source: BackupStorage
    target: BackupStorage
    file_name: str
    expected_hash: str  # the listed SHA-512: what both copies must have


def copy_backup(job: CopyJob, reporter: Reporter) -> int:
    """Copies the file and returns its size. A copy the target already holds with the right
    hash is kept as it is; one with another hash (an older key's copy) is replaced."""
    job.target.prepare()
    found = job.target.stat(job.file_name)
    if found is not None and _hash_of(job.target, job.file_name) == job.expected_hash:
        return found.size
    size = _stream(job, reporter)
    # On arrival: what the target now serves, read back, must be what was listed.
    arrived = _hash_of(job.target, job.file_name)
    if arrived != job.expected_hash:
        job.target.delete(job.file_name)
        raise StorageFailure(f"the copy at {job.target.location} of backup {job.backup_id} "
                             "does not have the listed SHA-512; it was removed")
    return size


def _stream(job: CopyJob, reporter: Reporter) -> int:
    with contextlib.ExitStack() as stack:
        try:
            opened = stack.enter_context(job.source.open(job.file_name))
        except FileNotFoundError:
            raise BackupNotFound(job.backup_id) from None
        watch = Watch(reporter, opened.size)
        out = stack.enter_context(job.target.replace(job.file_name))
        size = _pass_through(opened.stream, out, watch, job.expected_hash)
    watch.finish()
    return size


def _pass_through(source: BinaryIO, out: BackupWriter, watch: Watch, expected: str) -> int:
    digest, size = hashlib.sha512(), 0
    while block := source.read(COPY_SIZE):
        digest.update(block)
        out.write(block)
        size += len(block)
        watch.advance(len(block))
    # Checked before the copy gets its name: a damaged source leaves no copy behind.
    if format_sha512(digest.digest()) != expected:
        raise BackupCorrupted("the source's bytes do not match the listed SHA-512; no copy "
                              "was made from them")
    return size


def _hash_of(storage: BackupStorage, name: str) -> str | None:
    try:
        with storage.open(name) as opened:
            return sha512_of_stream(opened.stream)
    except FileNotFoundError:
        return None
