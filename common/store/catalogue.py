"""The catalogue of stored backups and their one-time download cookies."""

from __future__ import annotations

from typing import Any

import redis

from common.store.codec import (
    PREFIX,
    _decode_backup,
)


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
        """Remove a stored backup from the list; its row, or None if it was not listed."""
        flat = self._unlist_backup(keys=[self.backup_key(backup_id), f"{PREFIX}backups",
                                         f"{PREFIX}backup-task:{backup_id}"], args=[backup_id])
        if not flat:
            return None
        return _decode_backup(dict(zip(flat[::2], flat[1::2], strict=True)))

    # --- download cookies ------------------------------------------------------------------

    def put_cookie(self, digest: str, backup_id: str, ttl_seconds: int) -> None:
        self.redis.set(f"{PREFIX}cookie:{digest}", backup_id, ex=ttl_seconds)

    def take_cookie(self, digest: str) -> str | None:
        """The backup a cookie was made for; the cookie is gone after this call, used or not."""
        return self.redis.getdel(f"{PREFIX}cookie:{digest}")

