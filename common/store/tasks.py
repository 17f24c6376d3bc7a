"""Task rows: creation with their message, state changes, leases, cancels, secrets."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import redis

from common.clock import now_ms
from common.states import FINAL_STATES, TaskState
from common.store import alerts
from common.store import metrics as task_metrics
from common.store.codec import (
    MAX_WARNINGS,
    PREFIX,
    RUNNING_KEY,
    Created,
    SessionGate,
    _allowed_from,
    _dump,
    _flatten,
    _payload,
    _queue_key,
    _scalar,
)
from common.tasks import TaskRow

if TYPE_CHECKING:
    from common.celery_app import TaskMessage


class TaskRows:
    """Every state change runs a script that checks the transition table inside Redis."""

    redis: redis.Redis
    task_ttl: int

    # --- keys ------------------------------------------------------------------------------

    @staticmethod
    def task_key(task_id: str) -> str:
        return f"{PREFIX}task:{task_id}"

    @staticmethod
    def _user_tasks_key(user: str) -> str:
        return f"{PREFIX}tasks:user:{user}"

    @staticmethod
    def _user_running_key(user: str) -> str:
        return f"{PREFIX}tasks:running:user:{user}"

    @staticmethod
    def backup_key(backup_id: str) -> str:
        return f"{PREFIX}backup:{backup_id}"

    @staticmethod
    def hold_key(backup_id: str) -> str:
        return f"{PREFIX}backup-hold:{backup_id}"

    # --- tasks -----------------------------------------------------------------------------

    def create_backup_task(self, task: TaskRow, backup_id: str, quota: int,
                           sealed_password: str | None, secret_ttl: int,
                           user_cap: int = 1_000_000,
                           message: TaskMessage | None = None,
                           gate: SessionGate | None = None) -> Created:
        """Write a new backup task row unless its id is taken, the quota is full, or the user
        already runs `user_cap` tasks; with a message, queue it in the same step; with a
        gate, only for that live session."""
        keys = [self.task_key(task.id), f"{PREFIX}tasks", self._user_tasks_key(task.user),
                f"{PREFIX}backups", f"{PREFIX}backups:pending",
                f"{PREFIX}backup-task:{backup_id}", self._secret_key(task.id),
                RUNNING_KEY, self._user_running_key(task.user), task_metrics.KEY,
                *_queue_key(message)]
        args = [_payload(message), quota, task.id, task.start_time, backup_id,
                sealed_password or "", secret_ttl, user_cap, *_flatten(task.to_hash())]
        return _created(self._run_gated(
            self._create_backup_task, self._gated_create_backup_task, keys, args, gate))

    def create_task(self, task: TaskRow, user_cap: int | None = None,
                    sealed_password: str | None = None, secret_ttl: int = 3600,
                    message: TaskMessage | None = None,
                    gate: SessionGate | None = None) -> Created:
        """Write a new task row (with its sealed password), unless the user is at the cap;
        with a message, queue it in the same step; with a gate, only for that live session."""
        keys = [self.task_key(task.id), f"{PREFIX}tasks", self._user_tasks_key(task.user),
                RUNNING_KEY, self._user_running_key(task.user), self._secret_key(task.id),
                task_metrics.KEY, *_queue_key(message)]
        args = [_payload(message), task.id, task.start_time,
                "" if user_cap is None else user_cap, sealed_password or "", secret_ttl,
                *_flatten(task.to_hash())]
        return _created(self._run_gated(self._create_task, self._gated_create_task, keys,
                                        args, gate))

    @staticmethod
    def _run_gated(script, gated_script, keys: list[str], args: list[Any],
                   gate: SessionGate | None) -> list[str]:
        if gate is None:
            return script(keys=keys, args=args)
        return gated_script(keys=gate.keys() + keys, args=gate.args() + args)

    def enqueue(self, message: TaskMessage) -> None:
        """Queue a Celery message for a task whose row already exists, or for no task."""
        self.redis.lpush(message.queue, message.payload)

    def task_figures(self) -> dict[str, float]:
        """Tasks started, succeeded and failed by kind, backup durations and bytes."""
        return task_metrics.read(self.redis)

    def queue_depth(self, queue: str) -> int:
        return self.redis.llen(queue)

    def running_task_ids(self) -> list[str]:
        return sorted(self.redis.smembers(RUNNING_KEY))

    def has_lease(self, task_id: str) -> bool:
        return bool(self.redis.exists(self._lease_key(task_id)))

    def active_leases(self) -> int:
        """How many running tasks a living worker holds right now."""
        ids = self.running_task_ids()
        with self.redis.pipeline(transaction=False) as pipe:
            for task_id in ids:
                pipe.exists(self._lease_key(task_id))
            return sum(pipe.execute()) if ids else 0

    def task_ids_with_messages(self, queues: tuple[str, ...], held_since: float) -> set[str]:
        """Tasks whose Celery message waits in one of `queues`, or is held, received but not
        yet acknowledged, by a worker since `held_since` (kombu's Redis transport keeps those
        in `unacked`, and when each was received, in seconds, in `unacked_index`)."""
        waiting = [raw for queue in queues for raw in self.redis.lrange(queue, 0, -1)]
        tags = self.redis.zrangebyscore(UNACKED_INDEX_KEY, held_since, "+inf")
        raw_held = [raw for raw in self.redis.hmget(UNACKED_KEY, tags) if raw] if tags else []
        held = [_held_envelope(raw) for raw in raw_held]
        return {task_id for raw in (*waiting, *held) if (task_id := _message_task_id(raw))}

    def mark_requeued(self, task_id: str, attempt: int) -> bool:
        return bool(self._mark_requeued(keys=[self.task_key(task_id)], args=[attempt]))

    # --- worker health ---------------------------------------------------------------------

    def record_pong(self, nonce: str, holder: str) -> None:
        self.redis.set(f"{PREFIX}health:{nonce}", holder, ex=60)

    def pong(self, nonce: str) -> str | None:
        return self.redis.get(f"{PREFIX}health:{nonce}")

    def record_finished_task(self, task: TaskRow) -> None:
        """Write a task that ended before it was accepted (a synchronous check), in its final
        state: listed like any task and kept as long, never running, never queued."""
        if task.state not in FINAL_STATES:
            raise ValueError(f"task {task.id} is not finished: {task.state}")
        self._record_finished(
            keys=[self.task_key(task.id), f"{PREFIX}tasks", self._user_tasks_key(task.user),
                  alerts.CONFIG_KEY, alerts.EVENTS_KEY],
            args=[self.task_ttl, task.id, task.start_time, *_flatten(task.to_hash())])

    def get_task(self, task_id: str) -> TaskRow | None:
        row = self.redis.hgetall(self.task_key(task_id))
        return TaskRow.from_hash(row) if row else None

    def list_tasks(self, user: str | None = None) -> list[TaskRow]:
        """Tasks newest first, of one user or of all; ids whose row expired are dropped."""
        index = self._user_tasks_key(user) if user else f"{PREFIX}tasks"
        ids = self.redis.zrevrange(index, 0, -1)
        with self.redis.pipeline(transaction=False) as pipe:
            for task_id in ids:
                pipe.hgetall(self.task_key(task_id))
            rows = pipe.execute()
        gone = [task_id for task_id, row in zip(ids, rows, strict=True) if not row]
        if gone:
            self.redis.zrem(index, *gone)
        return [TaskRow.from_hash(row) for row in rows if row]

    def record_progress(self, task_id: str, percent: int) -> bool:
        """Raise a running task's progress; never lowers it, never past 99, never after the end."""
        return bool(self._progress(keys=[self.task_key(task_id)], args=[int(percent), now_ms()]))

    def add_warning(self, task_id: str, api_error: dict[str, Any]) -> bool:
        return bool(self._warning(keys=[self.task_key(task_id)],
                                  args=[json.dumps(api_error), MAX_WARNINGS, now_ms()]))

    def succeed(self, task_id: str, result: dict[str, Any] | None, result_type: str | None,
                backup: dict[str, Any] | None = None) -> bool:
        """End a task SUCCEEDED; with `backup`, list that backup in the same atomic step."""
        return self._finish_task(task_id, TaskState.SUCCEEDED, result=result,
                                 result_type=result_type, backup=backup)

    def fail(self, task_id: str, error: dict[str, Any]) -> bool:
        return self._finish_task(task_id, TaskState.FAILED, error=error)

    def _finish_task(self, task_id: str, target: TaskState, *, result: dict | None = None,
                     result_type: str | None = None, error: dict | None = None,
                     backup: dict[str, Any] | None = None) -> bool:
        backup_id, user, kind, started = self.redis.hmget(
            self.task_key(task_id), ["backupId", "user", "type", "startTime"])
        backup_id = (backup or {}).get("id") or backup_id or ""
        keys = [self.task_key(task_id), self._secret_key(task_id), self._lease_key(task_id),
                f"{PREFIX}backups:pending", f"{PREFIX}backups", self.backup_key(backup_id or "-"),
                f"{PREFIX}backup-task:{backup_id or '-'}", RUNNING_KEY,
                self._user_running_key(user or "-"), self._cancel_key(task_id),
                alerts.CONFIG_KEY, alerts.EVENTS_KEY, self.hold_key(backup_id or "-")]
        args = [target.value, _allowed_from(target), now_ms(), self.task_ttl,
                _dump(result), result_type or "", _dump(error), backup_id,
                (backup or {}).get("generatedOn", 0)]
        if backup:
            args += _flatten({k: _scalar(v) for k, v in backup.items()})
        if not self._finish(keys=keys, args=args):
            return False
        task_metrics.count_finished(self.redis, kind or "task", target.value,
                                    (now_ms() - int(started or now_ms())) / 1000,
                                    int((backup or {}).get("size") or 0))
        return True

    # --- cancel ----------------------------------------------------------------------------

    def request_cancel(self, task_id: str, error: dict[str, Any]) -> str:
        """'final' (nothing to do), 'ended' (it had not started) or 'flagged' (its worker stops)."""
        outcome = self._cancel(keys=[self.task_key(task_id), self._cancel_key(task_id)],
                               args=[])
        if outcome == "unclaimed":
            return "ended" if self.fail(task_id, error) else "final"
        return outcome

    def cancel_requested(self, task_id: str) -> bool:
        return bool(self.redis.exists(self._cancel_key(task_id)))

    @staticmethod
    def _cancel_key(task_id: str) -> str:
        return f"{PREFIX}task:{task_id}:cancel"

    # --- passwords in transit --------------------------------------------------------------

    @staticmethod
    def _secret_key(task_id: str) -> str:
        return f"{PREFIX}task:{task_id}:secret"

    def sealed_password(self, task_id: str) -> str | None:
        return self.redis.get(self._secret_key(task_id))

    # --- leases ----------------------------------------------------------------------------

    @staticmethod
    def _lease_key(task_id: str) -> str:
        return f"{PREFIX}task:{task_id}:lease"

    def claim(self, task_id: str, holder: str, lease_seconds: int) -> tuple[str, int]:
        """('claimed', attempt) | ('busy'|'final'|'missing', 0)."""
        outcome, attempts = self._claim(keys=[self.task_key(task_id), self._lease_key(task_id)],
                                        args=[holder, lease_seconds])
        return outcome, int(attempts)

    def renew_lease(self, task_id: str, holder: str, lease_seconds: int) -> bool:
        return bool(self._renew(keys=[self._lease_key(task_id)], args=[holder, lease_seconds]))


def _created(reply: list[str]) -> Created:
    outcome, value, *document = reply
    if outcome in ("quota", "user_busy"):
        return Created(outcome, count=int(value))
    if outcome == "created":
        return Created(outcome, task_id=value, document=document[0])
    return Created(outcome, task_id=value or None)


# kombu's Redis transport: received, unacknowledged messages, as [envelope, exchange, key],
# by delivery tag; and each tag's time of receipt (seconds since the epoch).
UNACKED_KEY = "unacked"
UNACKED_INDEX_KEY = "unacked_index"


def _held_envelope(raw: str) -> str:
    try:
        return json.dumps(json.loads(raw)[0])
    except (ValueError, IndexError, TypeError):
        return ""


def _message_task_id(raw: str) -> str | None:
    """The task id in a Celery message envelope; None for anything else."""
    try:
        headers = json.loads(raw).get("headers") or {}
    except (ValueError, AttributeError):
        return None
    task_id = headers.get("id") if isinstance(headers, dict) else None
    return task_id if isinstance(task_id, str) else None
