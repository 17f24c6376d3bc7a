"""The reading pass that a verify and a restore share: the stored file through age, zstd and tar.

Reading the stored file, its SHA-512, the decryption and the decompression run on a second
thread, a few MiB ahead of the calling thread, which walks the tar members, checks each for
safety, recomputes every file's SHA-256 and hands the bytes on. tarfile reads the headers
(every kind of tar header it knows, parsed as it always parses them), but file bytes come
straight from the decompressed blocks, as views, never copied on the way.

Every member is checked: no absolute names, no `..`, no symlink leaving the tree, no member
below a symlink, no hard links or special files. What was seen of each member is then proved
against the manifest that ends the archive (format/manifest.py).

Nothing an archive declares is trusted to be small: header payloads, names, the number of
members and the manifest's size and lines all have caps (format/members.py, manifest.py),
checked before what they declare is read, so a tiny crafted file cannot exhaust the worker.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any, Protocol

import zstandard

from common.backupfile.format.age import AgeError, AgeNoMatch, AgeReader
from common.backupfile.format.filehash import from_global_records, new_hasher
from common.backupfile.format.manifest import (
    MANIFEST_NAME,
    MAX_LINE,
    ManifestEntry,
    ManifestHeader,
    read_manifest,
)
from common.backupfile.format.members import (
    BoundedTarFile,
    check_header,
    check_link_target,
    member_kind,
    safe_parts,
)
from common.backupfile.io.blocks import COPY_SIZE
from common.backupfile.read.plainstream import PlainStream
from common.errors import ArchiveLimitExceeded, BackupCorrupted, UnsafeArchiveMember, WrongPassword

_SPOOL_MEMORY = 1 << 20
_DIGEST_SIZE = hashlib.sha256().digest_size


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class Checkpoint(Protocol):
    def checkpoint(self) -> None: ...


class Stored(Protocol):
    """The stored file as this pass reads it: read/verify.py's StoredFile."""

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
        with BoundedTarFile.open(fileobj=plain, mode="r:", encoding="utf-8",
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

    Only digests of the folders and symlinks seen so far stay in memory (to refuse a member
    below a symlink or before its folder), whatever the length of their names; a digest of
    what was seen of each member goes to a spooled file, and the manifest, which lists the
    members in archive order, is compared with them line by line as it streams past.
    """

    def __init__(self, tar: tarfile.TarFile, plain: PlainStream, watch: Checkpoint) -> None:
        self.files = self.bytes = 0
        self._tar, self._plain, self._watch = tar, plain, watch
        self._folders: set[bytes] = set()
        self._links: set[bytes] = set()
        self._seen = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY)  # noqa: SIM115
        self._recorded = 0
        self._manifest_read = False
        self._manifest_error: BackupCorrupted | None = None

    def members(self) -> Iterator[tarfile.TarInfo]:
        """Safe members; a file member's bytes must be read with copy() before the next one."""
        while (member := self._tar.next()) is not None:
            # Members are never looked up again, so tarfile's list of them would only grow.
            self._tar.members.clear()
            self._watch.checkpoint()
            if self._manifest_read:
                raise BackupCorrupted(f"member {member.name[:200]} follows the manifest")
            check_header(member)
            if member.name == MANIFEST_NAME and member.isreg():
                self._prove_manifest(member)
                continue
            yield self._admit(member)

    def copy(self, member: tarfile.TarInfo, write: Callable[[memoryview], object]) -> None:
        """Passes a file member's bytes to write in blocks, hashing them as they go by.

        The blocks are views of bytes that never change, so write may keep them.
        """
        # The hash the stream named in its global header, read by now with the first member.
        name = from_global_records(self._tar.pax_headers)
        hasher = new_hasher(name)
        for block in self._blocks(member):
            hasher.update(block)
            write(block)
        self.files, self.bytes = self.files + 1, self.bytes + member.size
        self._record(member.name, "file", member.size, f"{name}:{hasher.hexdigest()}", None)

    def finish(self) -> None:
        """Reads the streams to their ends, then reports how the manifest compared."""
        while self._plain.take(COPY_SIZE):
            self._watch.checkpoint()
        if not self._manifest_read:
            raise BackupCorrupted("the archive has no manifest")
        if self._manifest_error is not None:
            raise self._manifest_error

    def close(self) -> None:
        self._seen.close()

    def _blocks(self, member: tarfile.TarInfo) -> Iterator[memoryview]:
        self._plain.seek(member.offset_data)
        remaining = member.size
        while remaining:
            self._watch.checkpoint()
            block = self._plain.take(min(remaining, COPY_SIZE))
            if not block:
                raise BackupCorrupted(f"tar stream: member {member.name} is cut short")
            yield block
            remaining -= len(block)

    def _admit(self, member: tarfile.TarInfo) -> tarfile.TarInfo:
        path = "/".join(safe_parts(member.name))
        kind = member_kind(member)
        key = _key(path)
        self._check_parent(member.name, path)
        if key in self._folders or key in self._links:
            raise UnsafeArchiveMember(member.name, "appears twice in the archive")
        if kind == "symlink":
            check_link_target(member.name, path, member.linkname)
            self._links.add(key)
            self._record(member.name, kind, 0, None, member.linkname)
        elif kind == "dir":
            self._folders.add(key)
            self._record(member.name, kind, 0, None, None)
        return member

    def _check_parent(self, name: str, path: str) -> None:
        # A folder is admitted only below admitted folders, so a parent found among them
        # proves that no symlink lies on the way.
        parent = path.rpartition("/")[0]
        if not parent or _key(parent) in self._folders:
            return
        parts = parent.split("/")
        for prefix in ("/".join(parts[:depth]) for depth in range(1, len(parts) + 1)):
            if _key(prefix) in self._links:
                raise UnsafeArchiveMember(name, f"goes through the symlink {prefix}")
        raise BackupCorrupted(f"member {name} comes before its folder")

    def _prove_manifest(self, member: tarfile.TarInfo) -> None:
        """Compares the manifest with what was seen, a line at a time as it streams past."""
        # One line per member and one for the header: a larger manifest is not ours.
        lines = self._recorded + 1
        if member.size > lines * MAX_LINE:
            raise ArchiveLimitExceeded(
                f"a manifest of {member.size} bytes for {self._recorded} members, "
                f"at most {lines * MAX_LINE}")
        self._manifest_read = True
        self._seen.seek(0)
        with io.BufferedReader(_BlockReader(self._blocks(member)), COPY_SIZE) as text:
            try:
                # A line more than it should hold is read, to name an extra entry as such.
                _compare(*read_manifest(text, lines + 1), self._seen)
            except BackupCorrupted as error:
                # Reported by finish(): a member after the manifest, or a damaged stream,
                # is the more telling fault, and comes to light later.
                self._manifest_error = error

    def _record(self, path: str, kind: str, size: int, digest: str | None,
                target: str | None) -> None:
        """digest: `<hash name>:<hex>`, so that a file hashed otherwise than the manifest
        says cannot pass."""
        self._seen.write(_digest((path, kind, size, digest, target)))
        self._recorded += 1


class _BlockReader(io.RawIOBase):
    """A forward-only file over blocks of bytes, for a reader that wants lines."""

    def __init__(self, blocks: Iterator[memoryview]) -> None:
        super().__init__()
        self._blocks, self._block = blocks, memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._block:
            self._block = next(self._blocks, memoryview(b""))
        size = min(len(buffer), len(self._block))
        buffer[:size], self._block = self._block[:size], self._block[size:]
        return size


def _key(path: str) -> bytes:
    """A fixed-size stand-in for a path: names of any length cost the same memory."""
    return hashlib.sha256(path.encode("utf-8", "surrogatepass")).digest()


def _digest(facts: tuple[object, ...]) -> bytes:
    # ASCII JSON, as in the manifest, so names that are not UTF-8 survive as escapes.
    return hashlib.sha256(json.dumps(list(facts), ensure_ascii=True).encode("ascii")).digest()


def _facts(entry: ManifestEntry, file_hash: str) -> tuple[object, ...]:
    """What must agree between the manifest and the archive, by type."""
    is_file, is_link = entry.type == "file", entry.type == "symlink"
    digest = f"{file_hash}:{entry.digest}" if is_file and entry.digest is not None else None
    return (entry.path, entry.type, entry.size if is_file else 0,
            digest, entry.target if is_link else None)


def _compare(header: ManifestHeader, expected: Iterator[ManifestEntry], seen: IO[bytes]) -> None:
    listed = 0
    for entry in expected:
        digest = seen.read(_DIGEST_SIZE)
        if not digest:
            raise BackupCorrupted(f"{entry.path} is missing from the archive")
        if digest != _digest(_facts(entry, header.file_hash)):
            raise BackupCorrupted(f"{entry.path} does not match the manifest")
        listed += 1
    if seen.read(_DIGEST_SIZE):
        raise BackupCorrupted(f"member {listed + 1} of the archive is not in the manifest")
