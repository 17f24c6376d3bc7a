"""The catalogue of stored backups and their one-time download cookies."""

from __future__ import annotations

from typing import Any

import redis

from common.errors import BackupBusy
from common.store.codec import (
    PREFIX,
    _decode_backup,
    _flatten,
    _scalar,
    once_per,
)

# Present while Redis holds the catalogue as the storage last showed it; a flush or a lost
# volume takes it away with the rest, which is how the reaper knows to rebuild.
CHECKED_KEY = f"{PREFIX}catalogue:checked"


class Catalogue:
    """Backups listed whole, and the cookies that let a browser download one."""

    redis: redis.Redis
    task_ttl: int

    # --- backups ---------------------------------------------------------------------------

    def list_backups(self) -> list[dict[str, Any]]:
        """Stored backups, newest first."""
        ids = self.redis.zrevrange(f"{PREFIX}backups", 0, -1)
        with self.redis.pipeline(transaction=False) as pipe:
            for backup_id in ids:
                pipe.hgetall(self.backup_key(backup_id))
            rows = pipe.execute()
        return [_decode_backup(row) for row in rows if row]

    def get_backup(self, backup_id: str) -> dict[str, Any] | None:
        row = self.redis.hgetall(self.backup_key(backup_id))
        return _decode_backup(row) if row else None

    def unlist_backup(self, backup_id: str) -> dict[str, Any] | None:
        """Remove a stored backup from the list; its row, or None if it was not listed.
        BackupBusy while a task holds it (a rekey rewriting its file)."""
        try:
            flat = self._unlist_backup(
                keys=[self.backup_key(backup_id), f"{PREFIX}backups",
                      f"{PREFIX}backup-task:{backup_id}", self.hold_key(backup_id)],
                args=[backup_id])
        except redis.ResponseError as exc:
            reason, _, holder = str(exc).partition(" ")
            if reason != "BACKUPBUSY":
                raise
            raise BackupBusy(backup_id, holder) from None
        if not flat:
            return None
        return _decode_backup(dict(zip(flat[::2], flat[1::2], strict=True)))

    def relist_backup(self, row: dict[str, Any]) -> bool:
        """List a backup the storage holds; False when it is listed already, or its task is
        still writing it."""
        fields = _flatten({name: _scalar(value) for name, value in row.items()})
        return bool(self._relist_backup(
            keys=[self.backup_key(row["id"]), f"{PREFIX}backups", f"{PREFIX}backups:pending"],
            args=[row["id"], row["generatedOn"], *fields]))

    def unlist_unless_held(self, backup_id: str) -> dict[str, Any] | None:
        """As unlist_backup, but None while a task holds it: retention and a catalogue
        rebuild leave such a backup to a later run."""
        try:
            return self.unlist_backup(backup_id)
        except BackupBusy:
            return None

    def hold_backup(self, backup_id: str, task_id: str, seconds: int) -> str:
        """Hold a listed backup for the task that rewrites it: 'held', 'missing' when it is
        not listed, or the id of another task that holds it. The task's end lets it go."""
        return self._hold_backup(keys=[self.backup_key(backup_id), self.hold_key(backup_id)],
                                 args=[task_id, seconds])

    def backup_holder(self, backup_id: str) -> str | None:
        """The task that holds the backup, if one does."""
        return self.redis.get(self.hold_key(backup_id))

    def update_listed_backup(self, backup_id: str, changes: dict[str, Any]) -> bool:
        """Change fields of a listed backup's row; False when it is not listed."""
        fields = _flatten({name: _scalar(value) for name, value in changes.items()})
        return bool(self._update_listed_backup(keys=[self.backup_key(backup_id)], args=fields))

    def copy_sweep_due(self, every_seconds: int) -> bool:
        """True at most once per `every_seconds` across all workers: the sweep for backups
        without a good copy reads the whole listing."""
        return once_per(self.redis, f"{PREFIX}copies:swept", every_seconds)

    def copy_retry_due(self, backup_id: str, every_seconds: int) -> bool:
        """True at most once per `every_seconds` for one backup: a replica that is down gets
        one copy attempt per backup and period, not one per sweep."""
        return once_per(self.redis, f"{PREFIX}copies:retried:{backup_id}", every_seconds)

    def pending_backups(self) -> set[str]:
        """Backups whose task is writing them: not yet listed, not to be listed by others."""
        return set(self.redis.smembers(f"{PREFIX}backups:pending"))

    def catalogue_checked(self) -> bool:
        return bool(self.redis.exists(CHECKED_KEY))

    def mark_catalogue_checked(self) -> None:
        self.redis.set(CHECKED_KEY, "1")

    # --- download cookies ------------------------------------------------------------------

    def put_cookie(self, digest: str, backup_id: str, ttl_seconds: int) -> None:
        self.redis.set(f"{PREFIX}cookie:{digest}", backup_id, ex=ttl_seconds)

    def take_cookie(self, digest: str) -> str | None:
        """The backup a cookie was made for; the cookie is gone after this call, used or not."""
        return self.redis.getdel(f"{PREFIX}cookie:{digest}")

