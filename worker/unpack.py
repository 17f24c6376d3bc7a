"""The reading pass that a verify and a restore share: the stored file through age, zstd and tar.

Reading the stored file, its SHA-512, the decryption and the decompression run on a second
thread, a few MiB ahead of the calling thread, which walks the tar members, checks each for
safety, recomputes every file's SHA-256 and hands the bytes on. tarfile reads the headers
(every kind of tar header it knows, parsed as it always parses them), but file bytes come
straight from the decompressed blocks, as views, never copied on the way.

Every member is checked: no absolute names, no `..`, no symlink leaving the tree, no member
below a symlink, no hard links or special files. What was seen of each member is then proved
against the manifest that ends the archive (worker/manifest.py).
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import zip_longest
from typing import IO, Protocol

import zstandard

from common.errors import BackupCorrupted, UnsafeArchiveMember, WrongPassword
from worker.age import AgeError, AgeNoMatch, AgeReader
from worker.archive import COPY_SIZE, MANIFEST_NAME, ManifestEntry, read_manifest
from worker.members import check_link_target, member_kind, safe_parts
from worker.plainstream import PlainStream

__all__ = ["ArchiveScan", "backup_errors", "check_link_target", "open_archive", "safe_parts"]

AGE_MAGIC = b"age-encryption.org/v1\n"
_SPOOL_MEMORY = 1 << 20


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class Checkpoint(Protocol):
    def checkpoint(self) -> None: ...


class Stored(Protocol):
    """The stored file as this pass reads it: worker/verify.py's StoredFile."""

    watch: Checkpoint

    def read(self, size: int = -1, /) -> bytes: ...

    def encrypted(self) -> bool: ...


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


@contextmanager
def open_archive(
    stored: Stored, passphrase: str | None, identities: tuple[str, ...], max_work_factor: int
) -> Iterator[ArchiveScan]:
    """The tar stream inside stored, decrypted when it is an age file, then decompressed."""
    # The age header is read here, so that a wrong password fails before any thread starts.
    plain = PlainStream(_decompressed(_decrypted(stored, passphrase, identities,
                                                 max_work_factor)))
    try:
        # Not stream mode ("r|"): with a forward-only file, "r:" reads the same headers the
        # same way, and leaves the member bytes to be taken from the stream without copies.
        with tarfile.open(fileobj=plain, mode="r:", encoding="utf-8",
                          errors="surrogateescape") as tar:
            scan = ArchiveScan(tar, plain, stored.watch)
            try:
                yield scan
            finally:
                scan.close()
    finally:
        plain.close()


def _decrypted(
    stored: Stored, passphrase: str | None, identities: tuple[str, ...], cap: int
) -> Readable:
    if not stored.encrypted():
        return stored
    if passphrase is None and not identities:
        raise WrongPassword()
    return AgeReader(stored, passphrase=passphrase, identities=list(identities),
                     max_work_factor=cap)


def _decompressed(source: Readable) -> Callable[[], Iterator[bytes]]:
    def blocks() -> Iterator[bytes]:
        with zstandard.ZstdDecompressor().stream_reader(
                source, read_size=COPY_SIZE, read_across_frames=True, closefd=False) as plain:
            while block := plain.read(COPY_SIZE):
                yield block
        # Read here, on the same thread as the rest of the file: the zstd checksum and age's
        # last chunk come last, and nothing may follow them.
        if source.read(1):
            raise BackupCorrupted("data follows the compressed stream")

    return blocks


class ArchiveScan:
    """The members of an archive in order, each refused unless safe, proved by the manifest.

    Only the folders and symlinks seen so far stay in memory (to refuse a member below a
    symlink or before its folder); what was seen of each member goes to a spooled file, and
    is compared line by line with the manifest, which lists the members in archive order.
    """

    def __init__(self, tar: tarfile.TarFile, plain: PlainStream, watch: Checkpoint) -> None:
        self.files = self.bytes = 0
        self._tar, self._plain, self._watch = tar, plain, watch
        self._folders: set[str] = set()
        self._links: set[str] = set()
        self._seen = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY)  # noqa: SIM115
        self._manifest: IO[bytes] | None = None

    def members(self) -> Iterator[tarfile.TarInfo]:
        """Safe members; a file member's bytes must be read with copy() before the next one."""
        while (member := self._tar.next()) is not None:
            # Members are never looked up again, so tarfile's list of them would only grow.
            self._tar.members.clear()
            self._watch.checkpoint()
            if self._manifest is not None:
                raise BackupCorrupted(f"member {member.name} follows the manifest")
            if member.name == MANIFEST_NAME and member.isreg():
                self._manifest = self._spool_manifest(member)
                continue
            yield self._admit(member)

    def copy(self, member: tarfile.TarInfo, write: Callable[[memoryview], object]) -> None:
        """Passes a file member's bytes to write in blocks, hashing them as they go by.

        The blocks are views of bytes that never change, so write may keep them.
        """
        sha256 = self._stream(member, write)
        self.files, self.bytes = self.files + 1, self.bytes + member.size
        self._record(member.name, "file", member.size, sha256, None)

    def finish(self) -> None:
        """Reads the streams to their ends, then compares what was seen with the manifest."""
        while self._plain.take(COPY_SIZE):
            self._watch.checkpoint()
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

    def _stream(self, member: tarfile.TarInfo, write: Callable[[memoryview], object]) -> str:
        sha256 = hashlib.sha256()
        for block in self._content(member):
            self._watch.checkpoint()
            sha256.update(block)
            write(block)
        return sha256.hexdigest()

    def _content(self, member: tarfile.TarInfo) -> Iterator[memoryview]:
        if member.sparse is not None:
            # Never in a backup of ours; tarfile knows how to fill in the holes.
            content = self._tar.extractfile(member)
            while block := content.read(COPY_SIZE):
                yield memoryview(block)
            return
        self._plain.seek(member.offset_data)
        remaining = member.size
        while remaining:
            block = self._plain.take(min(remaining, COPY_SIZE))
            if not block:
                raise BackupCorrupted(f"tar stream: member {member.name} is cut short")
            yield block
            remaining -= len(block)

    def _admit(self, member: tarfile.TarInfo) -> tarfile.TarInfo:
        path = "/".join(safe_parts(member.name))
        kind = member_kind(member)
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
