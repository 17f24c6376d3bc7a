"""Verifying a stored backup, and the reading pass that a restore shares with it.

A verify always compares the SHA-512 of the stored bytes with the catalogue. When it can open
the archive (a plain backup, or the password or identities of an encrypted one), it also reads
the whole archive in the same pass over the file: age, zstd, tar in stream mode, every member
checked for safety and every file's SHA-256 recomputed, then the whole proved against the
manifest that ends the archive. Nothing is written to disk; worker/restore.py runs the same pass
and writes the members as they come.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import IO, Protocol

import zstandard

from common.errors import (
    BackupCorrupted,
    BackupNotFound,
    StorageFailure,
    TaskCanceled,
    UnsafeArchiveMember,
    WrongPassword,
)
from worker.age import AgeError, AgeNoMatch, AgeReader
from worker.archive import COPY_SIZE, MANIFEST_NAME, ManifestEntry, read_manifest
from worker.hashing import format_sha512
from worker.pipeline import Reporter
from worker.progress import ProgressThrottle

AGE_MAGIC = b"age-encryption.org/v1\n"
HASH_MISMATCH = "stored bytes do not match the catalogue hash"
_STOP_CHECK_INTERVAL = 0.1
_SPOOL_MEMORY = 1 << 20
_REFUSED_TYPES = {tarfile.LNKTYPE: "hard link", tarfile.CHRTYPE: "character device",
                  tarfile.BLKTYPE: "block device", tarfile.FIFOTYPE: "fifo"}


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class VerifyJob:
    backup_id: str
    backup_path: Path
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
    with open_stored(job.backup_path, job.backup_id, reporter, hashing=True) as stored:
        readable = not stored.encrypted() or job.passphrase is not None or bool(job.identities)
        scan = _check_content(job, stored) if readable else None
        stored.check_hash(job.expected_hash)
    stored.watch.finish()
    files, size = (scan.files, scan.bytes) if scan else (0, 0)
    return VerifyOutcome(job.backup_id, True, scan is not None, files, size)


def _check_content(job: VerifyJob, stored: StoredFile) -> ArchiveScan:
    # A damaged header can look like a wrong password: the stored hash tells the two apart.
    try:
        with backup_errors(), open_archive(stored, job.passphrase, job.identities,
                                           job.max_work_factor) as scan:
            for member in scan.members():
                if member.isreg():
                    scan.copy(member, _discard)
            scan.finish()
    except (WrongPassword, BackupCorrupted) as error:
        stored.check_hash(job.expected_hash, cause=error)
        raise
    return scan


def _discard(_block: bytes) -> None:
    pass


@contextmanager
def backup_errors() -> Iterator[None]:
    """Turns what the age, zstd and tar layers raise into the task errors of a bad backup."""
    try:
        yield
    except AgeNoMatch as error:
        raise WrongPassword() from error
    except AgeError as error:
        raise BackupCorrupted(str(error)) from error
    except zstandard.ZstdError as error:
        raise BackupCorrupted(f"zstd stream: {error}") from error
    except tarfile.TarError as error:
        raise BackupCorrupted(f"tar stream: {error}") from error


class Watch:
    """Progress by stored bytes read, and the stop flag, asked at most a few times a second."""

    def __init__(self, reporter: Reporter, total_bytes: int) -> None:
        self._reporter = reporter
        self._throttle = ProgressThrottle(total_bytes, reporter.progress)
        self._last_check = float("-inf")

    def advance(self, n_bytes: int) -> None:
        self._throttle.advance(n_bytes)

    def checkpoint(self) -> None:
        # Between members and for every MiB; a tree of tiny files would otherwise ask the
        # task row whether to stop thousands of times a second.
        now = time.monotonic()
        if now - self._last_check < _STOP_CHECK_INTERVAL:
            return
        self._last_check = now
        if self._reporter.should_stop():
            raise TaskCanceled()

    def finish(self) -> None:
        self._throttle.finish()


class StoredFile:
    """The backup file, read once: counted for progress and, when asked, hashed with SHA-512."""

    def __init__(self, raw: io.BufferedReader, watch: Watch, hashing: bool) -> None:
        self.watch = watch
        self._raw = raw
        self._sha512 = hashlib.sha512() if hashing else None

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._raw.read(size)
        except OSError as error:
            raise _read_failure(error) from error
        if self._sha512 is not None:
            self._sha512.update(data)
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
        if format_sha512(self._sha512.digest()) != expected.strip().upper():
            raise BackupCorrupted(HASH_MISMATCH) from cause


def _read_failure(error: OSError) -> StorageFailure:
    reason = error.strerror or str(error)
    return StorageFailure(reason, msg=f"Could not read the backup file: {reason}")


@contextmanager
def open_stored(
    path: Path, backup_id: str, reporter: Reporter, hashing: bool = False
) -> Iterator[StoredFile]:
    """The stored file of backup_id, with progress reported as its bytes are consumed."""
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        raise BackupNotFound(backup_id) from None
    except OSError as error:
        raise _read_failure(error) from error
    with raw:
        yield StoredFile(raw, Watch(reporter, os.fstat(raw.fileno()).st_size), hashing)


@contextmanager
def open_archive(
    stored: StoredFile, passphrase: str | None, identities: tuple[str, ...], max_work_factor: int
) -> Iterator[ArchiveScan]:
    """The tar stream inside stored, decrypted when it is an age file, then decompressed."""
    source = _decrypted(stored, passphrase, identities, max_work_factor)
    plain = zstandard.ZstdDecompressor().stream_reader(
        source, read_size=COPY_SIZE, read_across_frames=True, closefd=False)
    with plain, tarfile.open(fileobj=plain, mode="r|", bufsize=COPY_SIZE, encoding="utf-8",
                             errors="surrogateescape") as tar:
        scan = ArchiveScan(tar, plain, source, stored.watch)
        try:
            yield scan
        finally:
            scan.close()


def _decrypted(
    stored: StoredFile, passphrase: str | None, identities: tuple[str, ...], cap: int
) -> Readable:
    if not stored.encrypted():
        return stored
    if passphrase is None and not identities:
        raise WrongPassword()
    return AgeReader(stored, passphrase=passphrase, identities=list(identities),
                     max_work_factor=cap)


class ArchiveScan:
    """The members of an archive in order, each refused unless safe, proved by the manifest.

    Only the folders and symlinks seen so far stay in memory (to refuse a member below a
    symlink or before its folder); what was seen of each member goes to a spooled file, and
    is compared line by line with the manifest, which lists the members in archive order.
    """

    def __init__(
        self, tar: tarfile.TarFile, plain: Readable, source: Readable, watch: Watch
    ) -> None:
        self.files = self.bytes = 0
        self._tar, self._watch = tar, watch
        # Read to their ends by finish(): the zstd checksum and age's last chunk come last.
        self._plain, self._source = plain, source
        self._folders: set[str] = set()
        self._links: set[str] = set()
        self._seen = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY)  # noqa: SIM115
        self._manifest: IO[bytes] | None = None

    def members(self) -> Iterator[tarfile.TarInfo]:
        """Safe members; a file member's bytes must be read with copy() before the next one."""
        while (member := self._tar.next()) is not None:
            # Stream mode never goes back, so tarfile's list of members would only grow.
            self._tar.members.clear()
            self._watch.checkpoint()
            if self._manifest is not None:
                raise BackupCorrupted(f"member {member.name} follows the manifest")
            if member.name == MANIFEST_NAME and member.isreg():
                self._manifest = self._spool_manifest(member)
                continue
            yield self._admit(member)

    def copy(self, member: tarfile.TarInfo, write: Callable[[bytes], object]) -> None:
        """Passes a file member's bytes to write in blocks, hashing them as they go by."""
        sha256, size = self._stream(member, write)
        self.files, self.bytes = self.files + 1, self.bytes + size
        self._record(member.name, "file", size, sha256, None)

    def finish(self) -> None:
        """Reads the streams to their ends, then compares what was seen with the manifest."""
        while self._plain.read(COPY_SIZE):
            self._watch.checkpoint()
        if self._source.read(1):
            raise BackupCorrupted("data follows the compressed stream")
        if self._manifest is None:
            raise BackupCorrupted("the archive has no manifest")
        self._manifest.seek(0)
        self._seen.seek(0)
        seen = (tuple(json.loads(line)) for line in self._seen)
        _compare(read_manifest(self._manifest)[1], seen)

    def close(self) -> None:
        self._seen.close()
        if self._manifest is not None:
            self._manifest.close()

    def _stream(self, member: tarfile.TarInfo, write: Callable[[bytes], object]) -> tuple[str, int]:
        sha256, size = hashlib.sha256(), 0
        content = self._tar.extractfile(member)
        if content is None:
            raise BackupCorrupted(f"member {member.name} has no content")
        while block := content.read(COPY_SIZE):
            self._watch.checkpoint()
            sha256.update(block)
            write(block)
            size += len(block)
        return sha256.hexdigest(), size

    def _admit(self, member: tarfile.TarInfo) -> tarfile.TarInfo:
        path = "/".join(safe_parts(member.name))
        kind = _member_kind(member)
        self._check_parent(member.name, path)
        if path in self._folders or path in self._links:
            raise UnsafeArchiveMember(member.name, "appears twice in the archive")
        if kind == "symlink":
            check_link_target(member.name, path, member.linkname)
            self._links.add(path)
            self._record(member.name, kind, 0, None, member.linkname)
        elif kind == "dir":
            self._folders.add(path)
            self._record(member.name, kind, 0, None, None)
        return member

    def _check_parent(self, name: str, path: str) -> None:
        # A folder is admitted only below admitted folders, so a parent found among them
        # proves that no symlink lies on the way.
        parent = path.rpartition("/")[0]
        if not parent or parent in self._folders:
            return
        parts = parent.split("/")
        for prefix in ("/".join(parts[:depth]) for depth in range(1, len(parts) + 1)):
            if prefix in self._links:
                raise UnsafeArchiveMember(name, f"goes through the symlink {prefix}")
        raise BackupCorrupted(f"member {name} comes before its folder")

    def _spool_manifest(self, member: tarfile.TarInfo) -> IO[bytes]:
        spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY)  # noqa: SIM115
        self._stream(member, spool.write)
        return spool

    def _record(self, path: str, kind: str, size: int, sha256: str | None,
                target: str | None) -> None:
        # ASCII JSON, as in the manifest, so names that are not UTF-8 survive as escapes.
        line = json.dumps([path, kind, size, sha256, target], ensure_ascii=True) + "\n"
        self._seen.write(line.encode("ascii"))


def _facts(entry: ManifestEntry) -> tuple[object, ...]:
    """What must agree between the manifest and the archive, by type."""
    is_file, is_link = entry.type == "file", entry.type == "symlink"
    return (entry.path, entry.type, entry.size if is_file else 0,
            entry.sha256 if is_file else None, entry.target if is_link else None)


def _compare(expected: Iterator[ManifestEntry], seen: Iterator[tuple[object, ...]]) -> None:
    for entry, actual in zip_longest(expected, seen):
        if entry is None:
            raise BackupCorrupted(f"{actual[0]} is not in the manifest")
        if actual is None:
            raise BackupCorrupted(f"{entry.path} is missing from the archive")
        if _facts(entry) != actual:
            raise BackupCorrupted(f"{entry.path} does not match the manifest")


def safe_parts(name: str) -> list[str]:
    """The folders and name of a member below the restore folder; refuses any way out."""
    if "\0" in name:
        raise UnsafeArchiveMember(repr(name), "the name contains a NUL byte")
    if name.startswith("/"):
        raise UnsafeArchiveMember(name, "absolute name")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveMember(name, "the name contains ..")
    if not parts:
        raise UnsafeArchiveMember(name, "the name is the restore folder itself")
    return parts


def _member_kind(member: tarfile.TarInfo) -> str:
    if member.isreg():
        return "file"
    if member.isdir():
        return "dir"
    if member.issym():
        return "symlink"
    raise UnsafeArchiveMember(member.name, _REFUSED_TYPES.get(member.type, "unsupported type"))


def check_link_target(name: str, path: str, target: str) -> None:
    """Refuses a symlink unless its target stays inside the restore folder.

    `..` is allowed only before the first folder name of a target: after a name it climbs from
    wherever that name leads, and when the name is (or later becomes) another symlink, no
    check of this link alone can tell where that is.
    """
    if not target or "\0" in target or target.startswith("/"):
        raise UnsafeArchiveMember(name, "symlink target is empty, absolute or holds a NUL")
    depth, descended = path.count("/"), False
    for part in target.split("/"):
        if part == ".." and descended:
            raise UnsafeArchiveMember(name, "symlink target climbs after a folder name")
        if part == "..":
            depth -= 1
        descended = descended or part not in ("", ".", "..")
        if depth < 0:
            raise UnsafeArchiveMember(name, "symlink target leaves the restore folder")
