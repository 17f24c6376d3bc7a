"""A primary store with a second copy of each backup elsewhere (3-2-1): a replica folder or
object store that the copy task fills.

Writes go to the primary only; the copy task (io/replicate.py) brings each backup to the
replica afterwards, checked by its SHA-512. Reads fall back to the replica when the primary
has no such file, so that a download or restore still works after the primary lost it;
deletes remove both copies, so that a deleted backup does not live on elsewhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TypeVar

from common.backupfile.io.storage import BackupStorage, BackupWriter, OpenedFile, StoredObject
from common.errors import H4Error

log = logging.getLogger("h4backup.storage")
T = TypeVar("T")


class MirroredStorage(BackupStorage):
    def __init__(self, primary: BackupStorage, replica: BackupStorage) -> None:
        self.primary = primary
        self.replica = replica
        self.location = f"{primary.location} (replica {replica.location})"

    def prepare(self) -> None:
        # The replica is prepared by the copy task: a replica that is down must not stop
        # backups, only delay their second copy.
        self.primary.prepare()

    def create(self, name: str) -> AbstractContextManager[BackupWriter]:
        return self.primary.create(name)

    def replace(self, name: str) -> AbstractContextManager[BackupWriter]:
        return self.primary.replace(name)

    def rewrites_head_in_place(self, old_head_length: int, new_head_length: int) -> bool:
        return self.primary.rewrites_head_in_place(old_head_length, new_head_length)

    def rewrite_head(self, name: str, old_head_length: int, new_head: bytes) -> None:
        self.primary.rewrite_head(name, old_head_length, new_head)

    def open(self, name: str) -> AbstractContextManager[OpenedFile]:
        return self.holder_of(name)[0].open(name)

    def open_range(self, name: str, first: int, last: int | None) -> (
            AbstractContextManager[OpenedFile]):
        return self.holder_of(name)[0].open_range(name, first, last)

    def stat(self, name: str) -> StoredObject | None:
        return self.primary.stat(name) or self.replica.stat(name)

    def delete(self, name: str) -> None:
        self.primary.delete(name)
        self.replica.delete(name)

    def list(self) -> Iterator[StoredObject]:
        """Every backup file of either store, the primary's entry where both hold it."""
        seen = set()
        for stored in self.primary.list():
            seen.add(stored.name)
            yield stored
        yield from (stored for stored in self.replica.list() if stored.name not in seen)

    def remove_leftovers(self, backup_id: str) -> int:
        removed = self.primary.remove_leftovers(backup_id)
        return removed + self._on_replica(lambda: self.replica.remove_leftovers(backup_id), 0)

    def remove_orphans(self, older_than_seconds: float) -> list[str]:
        removed = self.primary.remove_orphans(older_than_seconds)
        return removed + self._on_replica(
            lambda: self.replica.remove_orphans(older_than_seconds), [])

    def _on_replica(self, clean_up: Callable[[], T], otherwise: T) -> T:
        """A replica that is down must not stop the primary's clean-up: what it keeps waits
        for the next sweep."""
        try:
            return clean_up()
        except (OSError, H4Error) as error:
            log.warning("could not clean up the replica at %s: %s", self.replica.location,
                        error)
            return otherwise

    def local_folder(self) -> Path | None:
        return self.primary.local_folder()

    def holder_of(self, name: str, size: int | None = None) -> (
            tuple[BackupStorage, StoredObject | None]):
        """The store to read `name` from, and its file there: the primary, unless it lacks
        the file (or holds it with another size than `size`, the listed one) and the replica
        has it whole."""
        found = self.primary.stat(name)
        if found is not None and size in (None, found.size):
            return self.primary, found
        copy = self.replica.stat(name)
        if copy is not None and size in (None, copy.size):
            return self.replica, copy
        return self.primary, found
