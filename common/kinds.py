"""The kinds of task a worker runs, in one table that the API, beat, the worker and the reaper
read. Adding a kind: an entry here, its handler in `worker/jobs.HANDLERS` (a test checks the
two agree), a route that starts it through `common/starting.TaskStarter`, and a CLI verb."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TaskKind:
    name: str  # the row's `type`, vCDA's workflowInfo.type
    celery_task: str  # the Celery task that runs it; its message carries the task id only
    result_type: str  # the ApiTask resultType it ends with
    stores_backup: bool  # an attempt may leave a half-written backup file for the next one


BACKUP = TaskKind("backup", "h4.backup.generate", "BackupInfo", stores_backup=True)
RESTORE = TaskKind("restore", "h4.backup.restore", "RestoreInfo", stores_backup=False)
VERIFY = TaskKind("verify", "h4.backup.verify", "VerifyInfo", stores_backup=False)
KINDS: dict[str, TaskKind] = {kind.name: kind for kind in (BACKUP, RESTORE, VERIFY)}


def kind_of(row: dict[str, Any]) -> TaskKind | None:
    """The kind a worker runs for this row, or None for a row no worker runs."""
    return KINDS.get(row.get("type") or "")
