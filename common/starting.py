"""Starting a task, one way for the API and beat alike.

A task is accepted with its Celery message or not at all: the quota and the user's task cap
are checked, the row is written, its sealed secret kept (in Redis memory only) and its
message queued, all in one Redis script. No crash or outage between two steps can leave a
RUNNING row that no worker will ever run, holding a quota slot.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from common.celery_app import TaskMessage
from common.config import Settings
from common.errors import BackupQuotaExceeded, TooManyTasks
from common.kinds import KINDS
from common.store import Created, SessionGate, Store
from common.tasks import SECRET_TTL_SECONDS, TaskRow
from common.transit import TransitSealer

# The message that runs a task: (Celery task name, task id) -> message.
MessageFor = Callable[[str, str], TaskMessage]

# A gated write that found no live session for its caller wrote nothing: the caller decides.
GATE_REFUSALS = frozenset({"unauthenticated", "forbidden"})


@dataclass(frozen=True)
class TaskStarter:
    store: Store
    settings: Settings
    message_for: MessageFor
    sealer: TransitSealer | None = None

    def backup(self, row: TaskRow, backup_id: str, secret: dict[str, str] | None = None,
               queue: bool = True, gate: SessionGate | None = None) -> Created:
        """A task that stores a backup, counted against the quota. Without `queue` the caller
        stores it itself (an import). A repeated backup id gives that backup's own task.
        With a gate, only for the caller's live session (else a refusal comes back)."""
        created = self.store.create_backup_task(
            row, backup_id, self.settings.backup_quota, self._seal(row, secret),
            SECRET_TTL_SECONDS, self.settings.user_task_cap,
            self._message(row) if queue else None, gate)
        if created.outcome in GATE_REFUSALS:
            return created
        if created.outcome == "quota":
            raise BackupQuotaExceeded(self.settings.backup_quota, created.count)
        if created.outcome == "user_busy":
            raise TooManyTasks(row.user, created.count)
        return created

    def task(self, row: TaskRow, secret: dict[str, str] | None = None) -> Created:
        """A task for a worker that stores no backup (restore, verify): the user's cap only."""
        created = self.store.create_task(row, self.settings.user_task_cap,
                                         self._seal(row, secret), SECRET_TTL_SECONDS,
                                         self._message(row))
        if created.outcome == "user_busy":
            raise TooManyTasks(row.user, created.count)
        return created

    def follow_up(self, row: TaskRow, secret: dict[str, str] | None = None) -> Created:
        """A task the service starts itself (a backup's copy to the replica, a scheduled
        check): not counted against the user's cap, which bounds what a user asks for; the
        number of listed backups bounds these."""
        return self.store.create_task(row, None, self._seal(row, secret), SECRET_TTL_SECONDS,
                                      self._message(row))

    def record(self, row: TaskRow) -> Created:
        """A task its caller runs and ends at once (a delete, a refused scheduled run)."""
        return self.store.create_task(row)

    def _message(self, row: TaskRow) -> TaskMessage:
        return self.message_for(KINDS[row.type].celery_task, row.id)

    def _seal(self, row: TaskRow, secret: dict[str, str] | None) -> str | None:
        secret = {k: v for k, v in (secret or {}).items() if v}
        kind = KINDS.get(row.type)
        if kind is not None:
            kind.check_arguments(row, secret)
        if not secret:
            return None
        if self.sealer is None:
            raise ValueError("this starter has no transit key to seal a secret with")
        return self.sealer.seal(json.dumps(secret), row.id)
