"""How rows are laid out in Redis: key prefixes and the encoding of backup rows. A task row
encodes itself (`common.tasks.TaskRow.to_hash` / `from_hash`)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from common.states import TRANSITIONS, TaskState

if TYPE_CHECKING:
    from common.celery_app import TaskMessage

PREFIX = "h4:"
RUNNING_KEY = f"{PREFIX}tasks:running"
MAX_WARNINGS = 100


def _allowed_from(target: TaskState) -> str:
    """States a task may be in to move to `target`, as a list the Lua scripts check."""
    return ",".join(sorted(s.value for s, moves in TRANSITIONS.items() if target in moves))


@dataclass(frozen=True)
class Created:
    """Outcome of asking for a backup task: a new task, the existing one, or over quota."""

    # "created" | "exists" | "quota" | "user_busy"; with a gate also "unauthenticated",
    # "forbidden"
    outcome: str
    task_id: str | None = None
    count: int = 0
    document: str | None = None  # the new task's ApiTask JSON, as the API sends it


def once_per(client: Any, key: str, seconds: int) -> bool:
    """True for the first caller in each period of `seconds`, across every process: a
    marker set only if absent, and gone after the period."""
    return bool(client.set(key, "1", nx=True, ex=seconds))


def session_key(digest: str) -> str:
    return f"{PREFIX}session:{digest}"


def user_key(name: str) -> str:
    return f"{PREFIX}user:{name}"


@dataclass(frozen=True)
class SessionGate:
    """A write made for an API caller, checked against the caller's session in the same
    script: the session live (its idle timer restarted), its user `user`, holding `role`."""

    digest: str
    user: str
    role: str
    idle_seconds: int

    def keys(self) -> list[str]:
        return [session_key(self.digest), user_key(self.user)]

    def args(self) -> list[str | int]:
        return [self.idle_seconds, self.user, self.role]


def _new_generation() -> str:
    return secrets.token_hex(8)


def _dump(value: Any) -> str:
    return "" if value is None else json.dumps(value, separators=(",", ":"))


def _scalar(value: Any) -> str | int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (dict, list)):  # a backup's labels
        return json.dumps(value, separators=(",", ":"))
    return value if isinstance(value, (int, str)) else str(value)


def _queue_key(message: TaskMessage | None) -> list[str]:
    return [] if message is None else [message.queue]


def _payload(message: TaskMessage | None) -> str:
    return "" if message is None else message.payload


def _pairs(flat: list[str]) -> dict[str, str]:
    """A hash as HGETALL returns it inside a script: field, value, field, value..."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _flatten(mapping: dict[str, Any]) -> list[Any]:
    return [item for pair in mapping.items() for item in pair]


def _decode_backup(row: dict[str, str]) -> dict[str, Any]:
    backup: dict[str, Any] = dict(row)
    for name in ("generatedOn", "size", "encrypted", "files", "sourceBytes", "checkedOn",
                 "replicatedOn"):
        if backup.get(name):
            backup[name] = int(backup[name])
    if "labels" in backup:
        backup["labels"] = json.loads(backup["labels"] or "{}")
    return backup
