"""The only module that reads and writes the service's rows in Redis.

Task rows are one hash each (`h4:task:<id>`). Every change of state runs as a Lua script that
checks the transition table from `common.states` inside Redis, so two writers can never race a
task out of a final state: a late progress write after SUCCEEDED simply does nothing. Creating a
backup task, counting it against the quota and reserving its backup id is one script too, so
concurrent requests cannot overshoot the quota.
"""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

from common import store_scripts as scripts
from common import task_metrics
from common.clock import now_ms
from common.states import FINAL_STATES, TRANSITIONS, TaskState

if TYPE_CHECKING:
    from common.celery_app import TaskMessage

PREFIX = "h4:"
RUNNING_KEY = f"{PREFIX}tasks:running"
MAX_WARNINGS = 100
JSON_FIELDS = ("result", "error", "warnings", "workflowInfo", "recipients")
INT_FIELDS = ("progress", "startTime", "endTime", "lastUpdated", "attempts")


def _allowed_from(target: TaskState) -> str:
    """States a task may be in to move to `target`, as a list the Lua scripts check."""
    return ",".join(sorted(s.value for s, moves in TRANSITIONS.items() if target in moves))


@dataclass(frozen=True)
class Created:
    """Outcome of asking for a backup task: a new task, the existing one, or over quota."""

    outcome: str  # "created" | "exists" | "quota"
    task_id: str | None = None
    count: int = 0


class Store:
    def __init__(self, client: redis.Redis, task_ttl_seconds: int = 7 * 24 * 3600) -> None:
        self.redis = client
        self.task_ttl = task_ttl_seconds
        self._create_backup_task = client.register_script(scripts.CREATE_BACKUP_TASK)
        self._create_task = client.register_script(scripts.CREATE_TASK)
        self._progress = client.register_script(scripts.PROGRESS)
        self._warning = client.register_script(scripts.WARNING)
        self._finish = client.register_script(scripts.FINISH)
        self._claim = client.register_script(scripts.CLAIM)
        self._renew = client.register_script(scripts.RENEW)
        self._unlist_backup = client.register_script(scripts.UNLIST_BACKUP)
        self._mark_requeued = client.register_script(scripts.MARK_REQUEUED)
        self._cancel = client.register_script(scripts.CANCEL)
        self._take_slot = client.register_script(scripts.TAKE_SLOT)
        self._touch_session = client.register_script(scripts.TOUCH_SESSION)
        self._create_session = client.register_script(scripts.CREATE_SESSION)
        self._end_sessions = client.register_script(scripts.END_SESSIONS)

    @classmethod
    def from_url(cls, url: str, task_ttl_seconds: int = 7 * 24 * 3600) -> Store:
        client = redis.Redis.from_url(url, decode_responses=True, health_check_interval=30,
                                      socket_connect_timeout=5, socket_timeout=30)
        return cls(client, task_ttl_seconds)

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

    # --- users and sessions ----------------------------------------------------------------
    # A user row carries a generation, new at every change to the user; each session keeps
    # the generation it was created under and ends as soon as the two differ.

    @staticmethod
    def _user_key(name: str) -> str:
        return f"{PREFIX}user:{name}"

    def put_user(self, name: str, password_hash: str, roles: list[str]) -> None:
        """Create or change a user; its sessions end."""
        self.redis.hset(self._user_key(name),
                        mapping={"name": name, "password": password_hash,
                                 "roles": json.dumps(roles), "generation": _new_generation()})

    def get_user(self, name: str) -> dict[str, Any] | None:
        row = self.redis.hgetall(self._user_key(name))
        if not row:
            return None
        return {"name": row["name"], "password": row["password"],
                "roles": json.loads(row["roles"]), "generation": row.get("generation", "")}

    def delete_user(self, name: str) -> bool:
        """Delete a user, which ends its sessions; False when there was none."""
        return bool(self.redis.delete(self._user_key(name)))

    def end_sessions(self, name: str) -> bool:
        """End every session of a user, who keeps password and roles; False without one."""
        return bool(self._end_sessions(keys=[self._user_key(name)], args=[_new_generation()]))

    def list_users(self) -> list[dict[str, Any]]:
        """Every user's name and roles, by name."""
        keys = sorted(set(self.redis.scan_iter(match=self._user_key("*"), count=500)))
        with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(key, ["name", "roles"])
            rows = pipe.execute() if keys else []
        return [{"name": name, "roles": json.loads(roles or "[]")}
                for name, roles in rows if name]

    def create_session(self, digest: str, user: str, roles: list[str], idle: int,
                       seen_generation: str | None = None) -> bool:
        """A session for `user`; with `seen_generation` (the user's when its password was
        checked), none and False if the user changed meanwhile."""
        keys = [f"{PREFIX}session:{digest}", self._user_key(user)]
        check = "0" if seen_generation is None else "1"
        return bool(self._create_session(keys=keys, args=[
            digest, user, json.dumps(roles), now_ms(), idle, check, seen_generation or ""]))

    def touch_session_and_get_task(
        self, digest: str, idle: int, task_id: str | None,
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The session for a token digest, its idle timer restarted (None when expired or its
        user changed), and with a task id that task, in one round trip; no task without a
        session."""
        keys = [f"{PREFIX}session:{digest}"]
        if task_id is not None:
            keys.append(self.task_key(task_id))
        session, *rows = self._touch_session(keys=keys, args=[idle, self._user_key("")])
        if not session:
            return None, None
        session = _pairs(session)
        task = _decode_task(_pairs(rows[0])) if rows and rows[0] else None
        return {"digest": session["digest"], "user": session["user"],
                "roles": json.loads(session["roles"])}, task

    def delete_session(self, digest: str) -> None:
        self.redis.delete(f"{PREFIX}session:{digest}")

    # --- tasks -----------------------------------------------------------------------------

    def create_backup_task(self, task: dict[str, Any], backup_id: str, quota: int,
                           sealed_password: str | None, secret_ttl: int,
                           user_cap: int = 1_000_000,
                           message: TaskMessage | None = None) -> Created:
        """Write a new backup task row unless its id is taken, the quota is full, or the user
        already runs `user_cap` tasks; with a message, queue it in the same step."""
        keys = [self.task_key(task["id"]), f"{PREFIX}tasks", self._user_tasks_key(task["user"]),
                f"{PREFIX}backups", f"{PREFIX}backups:pending",
                f"{PREFIX}backup-task:{backup_id}", self._secret_key(task["id"]),
                RUNNING_KEY, self._user_running_key(task["user"]), task_metrics.KEY,
                *_queue_key(message)]
        args = [_payload(message), quota, task["id"], task["startTime"], backup_id,
                sealed_password or "", secret_ttl, user_cap, *_flatten(_encode_task(task))]
        outcome, value = self._create_backup_task(keys=keys, args=args)
        if outcome in ("quota", "user_busy"):
            return Created(outcome, count=int(value))
        return Created(outcome, task_id=value)

    def create_task(self, task: dict[str, Any], user_cap: int | None = None,
                    sealed_password: str | None = None, secret_ttl: int = 3600,
                    message: TaskMessage | None = None) -> Created:
        """Write a new task row (with its sealed password), unless the user is at the cap;
        with a message, queue it in the same step."""
        keys = [self.task_key(task["id"]), f"{PREFIX}tasks", self._user_tasks_key(task["user"]),
                RUNNING_KEY, self._user_running_key(task["user"]), self._secret_key(task["id"]),
                task_metrics.KEY, *_queue_key(message)]
        args = [_payload(message), task["id"], task["startTime"],
                "" if user_cap is None else user_cap, sealed_password or "", secret_ttl,
                *_flatten(_encode_task(task))]
        outcome, value = self._create_task(keys=keys, args=args)
        if outcome == "user_busy":
            return Created(outcome, count=int(value))
        return Created(outcome, task_id=value)

    def enqueue(self, message: TaskMessage) -> None:
        """Queue a Celery message for a task whose row already exists, or for no task."""
        self.redis.lpush(message.queue, message.payload)

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

    def mark_requeued(self, task_id: str, attempt: int) -> bool:
        return bool(self._mark_requeued(keys=[self.task_key(task_id)], args=[attempt]))

    # --- worker health ---------------------------------------------------------------------

    def record_pong(self, nonce: str, holder: str) -> None:
        self.redis.set(f"{PREFIX}health:{nonce}", holder, ex=60)

    def pong(self, nonce: str) -> str | None:
        return self.redis.get(f"{PREFIX}health:{nonce}")

    def record_finished_task(self, task: dict[str, Any]) -> None:
        """Write a task that ended before it was accepted (a synchronous check), in its final
        state: listed like any task and kept as long, never running, never queued."""
        if task["state"] not in FINAL_STATES:
            raise ValueError(f"task {task['id']} is not finished: {task['state']}")
        key = self.task_key(task["id"])
        with self.redis.pipeline() as pipe:
            pipe.hset(key, mapping=_encode_task(task))
            pipe.expire(key, self.task_ttl)
            pipe.zadd(f"{PREFIX}tasks", {task["id"]: task["startTime"]})
            pipe.zadd(self._user_tasks_key(task["user"]), {task["id"]: task["startTime"]})
            pipe.execute()

    def get_task(self, task_id: str) -> dict[str, Any] | None:
        row = self.redis.hgetall(self.task_key(task_id))
        return _decode_task(row) if row else None

    def list_tasks(self, user: str | None = None) -> list[dict[str, Any]]:
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
        return [_decode_task(row) for row in rows if row]

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
                self._user_running_key(user or "-"), self._cancel_key(task_id)]
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

    # --- schedule ---------------------------------------------------------------------------

    def get_schedule(self) -> dict[str, Any] | None:
        raw = self.redis.get(f"{PREFIX}config:schedule")
        return json.loads(raw) if raw else None

    def put_schedule(self, config: dict[str, Any]) -> None:
        """Store the schedule; its clock restarts, so the first run is one period away."""
        with self.redis.pipeline() as pipe:
            pipe.set(f"{PREFIX}config:schedule", json.dumps(config))
            pipe.set(f"{PREFIX}schedule:last", now_ms())
            pipe.execute()

    def schedule_last_run(self) -> str:
        return self.redis.get(f"{PREFIX}schedule:last") or ""

    def take_schedule_slot(self, seen_last: str, new_last: int) -> bool:
        return bool(self._take_slot(keys=[f"{PREFIX}schedule:last"], args=[seen_last, new_last]))

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

    # --- login throttling ------------------------------------------------------------------

    def login_failures(self, keys: list[str]) -> list[tuple[int, int]]:
        """(failures, seconds left of their window) for each throttle key, in one round trip."""
        with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(f"{PREFIX}throttle:{key}")
                pipe.ttl(f"{PREFIX}throttle:{key}")
            answers = pipe.execute()
        return [(int(count or 0), int(ttl)) for count, ttl in zip(answers[::2], answers[1::2],
                                                                  strict=True)]

    def note_login_failure(self, keys: list[str], window_seconds: int) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.incr(f"{PREFIX}throttle:{key}")
                pipe.expire(f"{PREFIX}throttle:{key}", window_seconds, nx=True)
            pipe.execute()

    def clear_login_failures(self, *keys: str) -> None:
        self.redis.delete(*(f"{PREFIX}throttle:{key}" for key in keys))

    # --- download cookies ------------------------------------------------------------------

    def put_cookie(self, digest: str, backup_id: str, ttl_seconds: int) -> None:
        self.redis.set(f"{PREFIX}cookie:{digest}", backup_id, ex=ttl_seconds)

    def take_cookie(self, digest: str) -> str | None:
        """The backup a cookie was made for; the cookie is gone after this call, used or not."""
        return self.redis.getdel(f"{PREFIX}cookie:{digest}")

    def ping(self) -> bool:
        return bool(self.redis.ping())

    # --- this installation -----------------------------------------------------------------

    def instance_id(self) -> str:
        """This installation's id: made by the first caller, the same for every process after."""
        key = f"{PREFIX}instance-id"
        with self.redis.pipeline() as pipe:
            pipe.set(key, str(uuid.uuid4()), nx=True)
            pipe.get(key)
            _created, instance = pipe.execute()
        return instance


def _new_generation() -> str:
    return secrets.token_hex(8)


def _dump(value: Any) -> str:
    return "" if value is None else json.dumps(value, separators=(",", ":"))


def _scalar(value: Any) -> str | int:
    if isinstance(value, bool):
        return int(value)
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


def _encode_task(task: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name, value in task.items():
        if name in JSON_FIELDS:
            row[name] = _dump(value)
        elif value is None:
            row[name] = ""
        else:
            row[name] = _scalar(value)
    return row


def _decode_task(row: dict[str, str]) -> dict[str, Any]:
    task: dict[str, Any] = dict(row)
    for name in INT_FIELDS:
        if name in task:
            task[name] = int(task[name])
    for name in JSON_FIELDS:
        task[name] = json.loads(row[name]) if row.get(name) else None
    task["warnings"] = task["warnings"] or []
    task["resultType"] = row.get("resultType") or None
    return task


def _decode_backup(row: dict[str, str]) -> dict[str, Any]:
    backup: dict[str, Any] = dict(row)
    for name in ("generatedOn", "size", "encrypted"):
        if name in backup:
            backup[name] = int(backup[name])
    return backup
