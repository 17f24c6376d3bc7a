"""What a task row holds when it is created, and the names of the Celery tasks that run them."""

from __future__ import annotations

import uuid
from typing import Any

from common.backupfile.io.storage import backup_file_name
from common.clock import now_ms
from common.kinds import BACKUP
from common.states import TaskState

GENERATE_BACKUP = BACKUP.celery_task
SCHEDULE_TICK = "h4.schedule.tick"
REAP = "h4.maintenance.reap"
HEALTH_PING = "h4.health.ping"
REAP_INTERVAL_SECONDS = 5.0
# A sealed password outlives any backup that may still use it, and no longer.
SECRET_TTL_SECONDS = 6 * 3600


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
