"""What a task row holds, how it lies in Redis, and the names of the Celery tasks that run them.

A row is one Redis hash (`h4:task:<id>`), and the Lua scripts in `common/store/scripts.py` read
and write its fields by name (state, progress, attempts, requeuedAttempt, ...): the hash field
names are a storage format shared with every running version. `TaskRow` gives them snake_case
attributes in Python and keeps the names in Redis exactly as they are.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from common.backupfile.io.storage import backup_file_name
from common.clock import now_ms
from common.kinds import BACKUP
from common.states import TaskState

GENERATE_BACKUP = BACKUP.celery_task
SCHEDULE_TICK = "h4.schedule.tick"
REAP = "h4.maintenance.reap"
HEALTH_PING = "h4.health.ping"
ALERT_DELIVER = "h4.alerts.deliver"
REAP_INTERVAL_SECONDS = 5.0
# A sealed password outlives any backup that may still use it, and no longer.
SECRET_TTL_SECONDS = 6 * 3600

# Every hash field a row of this version writes or a script of this version sets.
ROW_FIELDS = frozenset({
    "id", "state", "progress", "startTime", "endTime", "lastUpdated", "user", "result",
    "resultType", "error", "warnings", "workflowInfo", "type", "resourceId", "operationID",
    "attempts", "backupId", "encrypted", "recipients", "kind", "requeuedAttempt", "labels",
})
# The ApiTask JSON and what it was made from: only the store's scripts write them, from the
# other fields, so a row never carries them.
DOCUMENT_FIELDS = frozenset({"document", "documentStamp"})
# Anything else in a hash came from another version and is kept aside in TaskRow.extra.
HASH_FIELDS = ROW_FIELDS | DOCUMENT_FIELDS

HashValue = str | int


def _json(value: Any) -> str:
    """A structured field as the row stores it: compact JSON, "" for null."""
    return "" if value is None else json.dumps(value, separators=(",", ":"))


def _from_json(text: str | None) -> Any:
    return json.loads(text) if text else None


def _int(text: str | None, default: int) -> int:
    return default if text in (None, "") else int(text)


def _optional_int(text: str | None) -> int | None:
    return None if text in (None, "") else int(text)


def _flag(text: str | None) -> bool | None:
    """`encrypted` is stored as 1 or 0; absent on rows of kinds that store no backup."""
    return None if text in (None, "") else bool(int(text))


@dataclass(frozen=True)
class WorkflowInfo:
    """vCDA's workflowInfo: what a task works on, as clients see it in the ApiTask."""

    type: str
    resource_type: str
    resource_id: str
    resource_name: str = ""

    def document(self) -> dict[str, str]:
        """The JSON object, keys in the order the row has always stored them."""
        return {"type": self.type, "resourceType": self.resource_type,
                "resourceId": self.resource_id, "resourceName": self.resource_name}

    @classmethod
    def from_document(cls, document: Mapping[str, Any] | None) -> WorkflowInfo:
        document = document or {}
        return cls(type=document.get("type", ""),
                   resource_type=document.get("resourceType", ""),
                   resource_id=document.get("resourceId", ""),
                   resource_name=document.get("resourceName", ""))


@dataclass(frozen=True, kw_only=True)
class TaskRow:
    """One task row, as read from Redis or about to be written there.

    Frozen: a row is a snapshot. Its state changes only through the store's scripts (which
    check the transition table inside Redis), so setting an attribute here could never
    change the task and is not offered; `dataclasses.replace` makes a changed copy to write.
    """

    id: str
    user: str
    type: str  # the task kind (`common.kinds`); the scripts count tasks by it
    resource_id: str
    workflow_info: WorkflowInfo
    start_time: int
    last_updated: int
    state: TaskState = TaskState.RUNNING
    progress: int = 0
    end_time: int = -1  # vCDA's value while a task runs
    result: dict[str, Any] | None = None
    result_type: str | None = None
    error: dict[str, Any] | None = None
    warnings: list[dict[str, Any]] = field(default_factory=list)
    operation_id: str = ""
    attempts: int = 0  # runs claimed; the CLAIM script counts them
    # Present only on the rows that need them; None means "not in the hash".
    backup_id: str | None = None
    encrypted: bool | None = None
    recipients: list[str] | None = None
    kind: str | None = None  # "scheduled" for beat's backups
    requeued_attempt: int | None = None  # written by the MARK_REQUEUED script only
    labels: dict[str, str] | None = None  # a backup's free-form labels, given at creation
    # Fields another version wrote, kept as they came so that a round trip loses nothing.
    extra: dict[str, str] = field(default_factory=dict)

    def to_hash(self) -> dict[str, HashValue]:
        """The Redis hash: JSON for structured fields, "" for a null, the optional fields only
        when set, unknown fields as they were read (a known field always wins)."""
        return {**self.extra, **self._base_fields(), **self._optional_fields()}

    def _base_fields(self) -> dict[str, HashValue]:
        return {
            "id": self.id, "state": self.state.value, "progress": self.progress,
            "startTime": self.start_time, "endTime": self.end_time,
            "lastUpdated": self.last_updated, "user": self.user, "result": _json(self.result),
            "resultType": self.result_type or "", "error": _json(self.error),
            "warnings": _json(self.warnings),
            "workflowInfo": _json(self.workflow_info.document()), "type": self.type,
            "resourceId": self.resource_id, "operationID": self.operation_id,
            "attempts": self.attempts,
        }

    def _optional_fields(self) -> dict[str, HashValue]:
        optional = {
            "backupId": self.backup_id,
            "encrypted": None if self.encrypted is None else int(self.encrypted),
            "recipients": None if self.recipients is None else _json(self.recipients),
            "kind": self.kind, "requeuedAttempt": self.requeued_attempt,
            "labels": None if self.labels is None else _json(self.labels),
        }
        return {name: value for name, value in optional.items() if value is not None}

    @classmethod
    def from_hash(cls, mapping: Mapping[str, str]) -> TaskRow:
        """A row from its hash as HGETALL returns it (every value a string). Only `id` and
        `state` must be there (every script reads them); another field missing takes the value
        a new row starts with. Fields this version does not know go to `extra` rather than
        failing the read: rows outlive the version that wrote them."""
        get = mapping.get
        return cls(
            id=mapping["id"], user=get("user", ""), type=get("type", ""),
            resource_id=get("resourceId", ""),
            workflow_info=WorkflowInfo.from_document(_from_json(get("workflowInfo"))),
            start_time=_int(get("startTime"), 0), last_updated=_int(get("lastUpdated"), 0),
            state=TaskState(mapping["state"]), progress=_int(get("progress"), 0),
            end_time=_int(get("endTime"), -1), result=_from_json(get("result")),
            result_type=get("resultType") or None, error=_from_json(get("error")),
            warnings=_from_json(get("warnings")) or [], operation_id=get("operationID", ""),
            attempts=_int(get("attempts"), 0), backup_id=get("backupId"),
            encrypted=_flag(get("encrypted")), recipients=_from_json(get("recipients")),
            kind=get("kind"), requeued_attempt=_optional_int(get("requeuedAttempt")),
            labels=_from_json(get("labels")),
            extra={name: value for name, value in mapping.items() if name not in HASH_FIELDS},
        )

    def document(self) -> dict[str, Any]:
        """The vCDA ApiTask the API answers with (`api.schemas.ApiTaskSchema` dumps it): what
        a client sees, none of the service's own fields (attempts, backupId, ...)."""
        return {
            "id": self.id, "state": self.state.value, "progress": self.progress,
            "startTime": self.start_time, "endTime": self.end_time,
            "lastUpdated": self.last_updated, "user": self.user, "result": self.result,
            "resultType": self.result_type, "error": self.error, "warnings": self.warnings,
            "workflowInfo": self.workflow_info.document(),
        }


def new_task(user: str, kind: str, resource_type: str, resource_id: str,
             resource_name: str = "", operation_id: str | None = None, *,
             backup_id: str | None = None) -> TaskRow:
    """A fresh RUNNING row: vCDA shows a queued task as RUNNING with progress 0."""
    now = now_ms()
    return TaskRow(
        id=str(uuid.uuid4()), user=user, type=kind, resource_id=resource_id,
        workflow_info=WorkflowInfo(kind, resource_type, resource_id, resource_name),
        start_time=now, last_updated=now, operation_id=operation_id or "",
        backup_id=backup_id,
    )


def new_backup_task(user: str, backup_id: str, encrypted: bool,
                    operation_id: str | None = None, *, recipients: list[str] | None = None,
                    kind: str | None = None, labels: dict[str, str] | None = None) -> TaskRow:
    """A backup's row; `recipients` and `kind` are left out of the hash when None."""
    row = new_task(user, BACKUP.name, "backup", backup_id,
                   backup_file_name(backup_id, encrypted), operation_id, backup_id=backup_id)
    return replace(row, encrypted=encrypted, recipients=recipients, kind=kind,
                   labels=labels or None)
