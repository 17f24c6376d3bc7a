"""Where backup files are kept, behind one interface that every backend implements.

The callers (the backup pipeline, restore, verify, import, downloads, the reaper, retention)
name a backup file and never a place: a folder on this host (io/folder.py) or an object store
implement the same few operations. Every backend keeps the promise the catalogue relies on:
a file is visible under its final name only once it is whole, and a second write of the same
name fails instead of replacing a stored backup. Only `replace` and `rewrite_head` change a
stored file, for a rekey and a second copy, and they too show the old file or the new one,
whole, whatever moment a crash comes.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from common.backupfile.io.blocks import COPY_SIZE

# Backup ids name files: nothing that could climb out of the backup folder or hide there.
SAFE_BACKUP_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")
PLAIN_SUFFIX = ".tar.zst"
ENCRYPTED_SUFFIX = ".tar.zst.age"
# Beside each backup, its catalogue record: what Redis lists, kept with the bytes it describes.
RECORD_SUFFIX = ".backup.json"
MAX_RECORD_BYTES = 64 << 10


def backup_file_name(backup_id: str, encrypted: bool) -> str:
    """`<id>.tar.zst`, with `.age` appended when the backup is encrypted."""
    if not SAFE_BACKUP_ID.fullmatch(backup_id):
        raise ValueError(f"unsafe backup id {backup_id!r}")
    return backup_id + (ENCRYPTED_SUFFIX if encrypted else PLAIN_SUFFIX)


def record_name(backup_id: str) -> str:
    if not SAFE_BACKUP_ID.fullmatch(backup_id):
        raise ValueError(f"unsafe backup id {backup_id!r}")
    return backup_id + RECORD_SUFFIX


def final_names(backup_id: str) -> tuple[str, str, str]:
    """The names a backup may have stored: its file, plain or encrypted, and its record."""
    return (backup_file_name(backup_id, False), backup_file_name(backup_id, True),
            record_name(backup_id))


def backup_id_of(name: str) -> str | None:
    """The backup a finished backup file belongs to; None for any other name (a temporary,
    a record)."""
    for suffix in (ENCRYPTED_SUFFIX, PLAIN_SUFFIX):
        if name.endswith(suffix) and SAFE_BACKUP_ID.fullmatch(name[: -len(suffix)]):
            return name[: -len(suffix)]
    return None


def is_backup_file_name(name: str) -> bool:
    """True for a finished backup's name (not a temporary, not a record)."""
    return backup_id_of(name) is not None


class BackupWriter(Protocol):
    def write(self, data: bytes, /) -> int: ...


@dataclass(frozen=True)
class StoredObject:
    name: str
    size: int
    modified_ms: int  # when it was stored, ms since the epoch
    locked_until_ms: int | None = None  # under object lock, it cannot be deleted before then

    def locked_at(self, now_ms: int) -> bool:
        """Whether the store's object lock still holds it at `now_ms`."""
        return self.locked_until_ms is not None and self.locked_until_ms > now_ms


@dataclass(frozen=True)
class OpenedFile:
    """A stored file open for one sequential read; `stream` can peek at its first bytes."""

    stream: BinaryIO
    size: int


class BackupStorage(ABC):
    """The operations every place that keeps backup files offers."""

    location: str  # for messages and logs: a folder, or a bucket and prefix

    @abstractmethod
    def prepare(self) -> None:
        """Make the place ready to store (create the folder, check the bucket)."""

    @abstractmethod
    def create(self, name: str) -> AbstractContextManager[BackupWriter]:
        """A writer whose bytes appear under `name` only when the block ends without error;
        StorageFailure if `name` exists already."""

    @abstractmethod
    def replace(self, name: str) -> AbstractContextManager[BackupWriter]:
        """A writer whose bytes take the place of the file `name` (or become it, when there is
        none) only when the block ends without error; until then readers see the old file,
        and nothing of it stays behind afterwards. BackupLocked when the store keeps the old
        file under object lock."""

    def rewrites_head_in_place(self, old_head_length: int, new_head_length: int) -> bool:
        """Whether rewrite_head costs this store the head only, rather than a copy of the
        whole file; where it does not, a caller that reads the file anyway may as well write
        the copy itself through replace()."""
        return False

    def rewrite_head(self, name: str, old_head_length: int, new_head: bytes) -> None:
        """The stored file with its first old_head_length bytes (fewer than its size) replaced
        by new_head: afterwards, and after a crash at any moment, it reads as the old file or
        the new one, whole. FileNotFoundError when there is none.

        Here a copy through replace(): the new head, then the rest of the file."""
        with self.open_range(name, old_head_length, None) as rest, self.replace(name) as out:
            out.write(new_head)
            while block := rest.stream.read(COPY_SIZE):
                out.write(block)

    @abstractmethod
    def open(self, name: str) -> AbstractContextManager[OpenedFile]:
        """The stored file for reading; FileNotFoundError when there is none."""

    @abstractmethod
    def open_range(self, name: str, first: int, last: int | None) -> (
            AbstractContextManager[OpenedFile]):
        """Bytes first to last of the file (inclusive; to its end when last is None), for
        a download that resumes; FileNotFoundError when there is none."""

    @abstractmethod
    def stat(self, name: str) -> StoredObject | None:
        """The stored file, or None when there is none."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Remove a stored file; nothing happens when there is none."""

    @abstractmethod
    def list(self) -> Iterator[StoredObject]:
        """Every finished backup file stored here."""

    @abstractmethod
    def remove_leftovers(self, backup_id: str) -> int:
        """Remove what a dead attempt at this unlisted backup may have left: unfinished
        writes and a file it stored but could not list. Returns how many were removed."""

    @abstractmethod
    def remove_orphans(self, older_than_seconds: float) -> list[str]:
        """Remove unfinished writes older than this, which no living writer owns."""

    # --- the catalogue record, the same on every backend -------------------------------------

    def write_record(self, backup_id: str, record: dict[str, object],
                     replace: bool = False) -> None:
        """Store the backup's record; like a backup file, whole or not at all, and once,
        unless replace says that it takes the place of the record there is (after a rekey)."""
        data = json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        name = record_name(backup_id)
        with self.replace(name) if replace else self.create(name) as out:
            out.write(data)

    def read_record(self, backup_id: str) -> dict[str, object] | None:
        """The backup's record; None when it has none, or none that can be read as one."""
        try:
            with self.open(record_name(backup_id)) as opened:
                data = opened.stream.read(MAX_RECORD_BYTES + 1)
        except FileNotFoundError:
            return None
        try:
            record = json.loads(data) if len(data) <= MAX_RECORD_BYTES else None
        except ValueError:
            return None
        return record if isinstance(record, dict) else None

    def delete_backup(self, backup_id: str, file_name: str) -> None:
        """The file first: a record left alone is dropped by the next catalogue rebuild."""
        self.delete(file_name)
        self.delete(record_name(backup_id))

    def local_folder(self) -> Path | None:
        """The folder on this host that holds the files, if they are on this host: a backup
        must not include itself, and a download can then be served with sendfile."""
        return None
