"""What a task row holds when it is created, and the names of the Celery tasks that run them."""

from __future__ import annotations

import re
import uuid
from typing import Any

from common.states import TaskState
from common.store import now_ms

GENERATE_BACKUP = "h4.backup.generate"
RESTORE_BACKUP = "h4.backup.restore"
VERIFY_BACKUP = "h4.backup.verify"
SCHEDULE_TICK = "h4.schedule.tick"
# The Celery task that runs each kind of task row.
CELERY_TASK_FOR = {"backup": GENERATE_BACKUP, "restore": RESTORE_BACKUP,
                   "verify": VERIFY_BACKUP}
REAP = "h4.maintenance.reap"
HEALTH_PING = "h4.health.ping"
REAP_INTERVAL_SECONDS = 5.0
# Backup ids name files: nothing that could climb out of the backup folder or hide there.
SAFE_BACKUP_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")

# A sealed password outlives any backup that may still use it, and no longer.
SECRET_TTL_SECONDS = 6 * 3600


def backup_file_name(backup_id: str, encrypted: bool) -> str:
    """`<id>.tar.zst`, with `.age` appended when the backup is encrypted."""
    if not SAFE_BACKUP_ID.fullmatch(backup_id):
        raise ValueError(f"unsafe backup id {backup_id!r}")
    return f"{backup_id}.tar.zst.age" if encrypted else f"{backup_id}.tar.zst"


def new_task(user: str, kind: str, resource_type: str, resource_id: str,
             resource_name: str = "", operation_id: str | None = None) -> dict[str, Any]:
    """A fresh RUNNING row: vCDA shows a queued task as RUNNING with progress 0."""
    now = now_ms()
    return {
        "id": str(uuid.uuid4()), "state": TaskState.RUNNING.value, "progress": 0,
        "startTime": now, "endTime": -1, "lastUpdated": now, "user": user,
        "result": None, "resultType": None, "error": None, "warnings": [],
        "workflowInfo": {"type": kind, "resourceType": resource_type,
                         "resourceId": resource_id, "resourceName": resource_name},
        "type": kind, "resourceId": resource_id, "operationID": operation_id or "",
        "attempts": 0,
    }


def new_backup_task(user: str, backup_id: str, encrypted: bool,
                    operation_id: str | None = None) -> dict[str, Any]:
    row = new_task(user, "backup", "backup", backup_id,
                   backup_file_name(backup_id, encrypted), operation_id)
    row["backupId"] = backup_id
    row["encrypted"] = int(encrypted)
    return row
