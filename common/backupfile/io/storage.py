"""Where backup files are kept, behind one interface that every backend implements.

The callers (the backup pipeline, restore, verify, import, downloads, the reaper, retention)
name a backup file and never a place: a folder on this host (io/folder.py) or an object store
implement the same few operations. Every backend keeps the promise the catalogue relies on:
a file is visible under its final name only once it is whole, and a second write of the same
name fails instead of replacing a stored backup.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

# Backup ids name files: nothing that could climb out of the backup folder or hide there.
SAFE_BACKUP_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")
PLAIN_SUFFIX = ".tar.zst"
ENCRYPTED_SUFFIX = ".tar.zst.age"


def backup_file_name(backup_id: str, encrypted: bool) -> str:
    """`<id>.tar.zst`, with `.age` appended when the backup is encrypted."""
    if not SAFE_BACKUP_ID.fullmatch(backup_id):
        raise ValueError(f"unsafe backup id {backup_id!r}")
    return backup_id + (ENCRYPTED_SUFFIX if encrypted else PLAIN_SUFFIX)


def final_names(backup_id: str) -> tuple[str, str]:
    """The names a backup's file may have once stored: plain and encrypted."""
    return backup_file_name(backup_id, False), backup_file_name(backup_id, True)


def is_backup_file_name(name: str) -> bool:
    """True for a finished backup's name (not a temporary, not a sidecar)."""
    for suffix in (ENCRYPTED_SUFFIX, PLAIN_SUFFIX):
        if name.endswith(suffix):
            return SAFE_BACKUP_ID.fullmatch(name[: -len(suffix)]) is not None
    return False


class BackupWriter(Protocol):
    def write(self, data: bytes, /) -> int: ...


@dataclass(frozen=True)
class StoredObject:
    name: str
    size: int
    modified_ms: int  # when it was stored, ms since the epoch


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
    def open(self, name: str) -> AbstractContextManager[OpenedFile]:
        """The stored file for reading; FileNotFoundError when there is none."""

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

    def local_folder(self) -> Path | None:
        """The folder on this host that holds the files, if they are on this host: a backup
        must not include itself, and a download can then be served with sendfile."""
        return None
