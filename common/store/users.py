"""Users, their sessions, and login throttling."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from common.clock import now_ms
from common.store.codec import (
    PREFIX,
    _new_generation,
    _pairs,
    session_key,
    user_key,
)
from common.tasks import TaskRow


@dataclass(frozen=True)
class TaskDocument:
    """A task as a poll needs it: whose it is, and its ApiTask JSON ready to send. A row
    whose document a writer of another version left stale comes as the row instead."""

    user: str
    document: str | None
    row: TaskRow | None = None

    @classmethod
    def from_reply(cls, reply: list[Any]) -> TaskDocument:
        (user, document), *row = reply
        if document:
            return cls(user, document)
        return cls(user, None, TaskRow.from_hash(_pairs(row[0])))


def _session(flat: list[str]) -> dict[str, Any]:
    session = _pairs(flat)
    return {"digest": session["digest"], "user": session["user"],
            "roles": json.loads(session["roles"])}


class UsersAndSessions:
    """Users (scrypt hashes), sessions (stored by token digest) and failed-login counters."""

    redis: redis.Redis
    task_ttl: int

    # --- users and sessions ----------------------------------------------------------------
    # A user row carries a generation, new at every change to the user; each session keeps
    # the generation it was created under and ends as soon as the two differ.

    _user_key = staticmethod(user_key)

    def put_user(self, name: str, password_hash: str, roles: list[str]) -> None:
        """Create or change a user; its sessions end."""
        self.redis.hset(self._user_key(name),
                        mapping={"name": name, "password": password_hash,
                                 "roles": json.dumps(roles), "generation": _new_generation()})

    def add_user(self, name: str, password_hash: str, roles: list[str]) -> bool:
        """Create a user unless one of that name exists (then False, and nothing changes)."""
        return bool(self._add_user(keys=[self._user_key(name)], args=[
            name, password_hash, json.dumps(roles), _new_generation()]))

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
        keys = [session_key(digest), self._user_key(user)]
        check = "0" if seen_generation is None else "1"
        return bool(self._create_session(keys=keys, args=[
            digest, user, json.dumps(roles), now_ms(), idle, check, seen_generation or ""]))

    def touch_session_and_get_task(
        self, digest: str, idle: int, task_id: str | None,
    ) -> tuple[dict[str, Any] | None, TaskRow | None]:
        """The session for a token digest, its idle timer restarted (None when expired or its
        user changed), and with a task id that task, in one round trip; no task without a
        session."""
        keys = [session_key(digest)]
        if task_id is not None:
            keys.append(self.task_key(task_id))
        session, *rows = self._touch_session(keys=keys, args=[idle, self._user_key("")])
        if not session:
            return None, None
        task = TaskRow.from_hash(_pairs(rows[0])) if rows and rows[0] else None
        return _session(session), task

    def touch_session_and_get_document(
        self, digest: str, idle: int, task_id: str,
    ) -> tuple[dict[str, Any] | None, TaskDocument | None]:
        """The session as `touch_session_and_get_task` gives it, and the task's ready ApiTask
        document with its owner, in one round trip."""
        reply = self._task_document(keys=[session_key(digest), self.task_key(task_id)],
                                    args=[idle, self._user_key("")])
        session, *task = reply
        if not session:
            return None, None
        return _session(session), (TaskDocument.from_reply(task) if task else None)

    def delete_session(self, digest: str) -> None:
        self.redis.delete(session_key(digest))

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

