"""GET /health: Redis answers, and a worker really consumes (a ping task, answered in time).

A worker that is alive but no longer takes messages cannot answer the ping, so it shows as
unhealthy; workers that are all busy with backups hold renewed leases, which counts as alive.

Anyone may ask, so a flood of unauthenticated calls must cost nothing: they get the status of
the last check, at most HEALTH_MAX_AGE_SECONDS old, and each process runs one check at a time.
The details (latencies, which worker answered) are for callers with a session.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable

import redis
from flask.views import MethodView

from api.auth import current_caller
from api.blueprint import Blueprint
from api.media import RESPONSE_TYPE
from api.schemas import HealthSchema
from api.services import app_services
from common.errors import NotAuthenticated

blp = Blueprint("health", __name__, url_prefix="/health", description="Service health.")

PING_DEADLINE_SECONDS = 3.0
HEALTH_MAX_AGE_SECONDS = 2.0


class HealthCache:
    """The last check of this process, and a lock so that only one check runs at a time."""

    def __init__(self, max_age: float = HEALTH_MAX_AGE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._max_age, self._clock, self._lock = max_age, clock, threading.Lock()
        self._body: dict | None = None
        self._checked_at = -math.inf

    def _fresh(self) -> dict | None:
        return self._body if self._clock() - self._checked_at <= self._max_age else None

    def get(self, check: Callable[[], dict]) -> dict:
        if body := self._fresh():
            return body
        # Callers arriving during a check wait for its result instead of starting their own.
        if not self._lock.acquire(timeout=PING_DEADLINE_SECONDS + 2):
            return self._body or _unavailable("a health check is already running")
        try:
            return self._fresh() or self.store(check())
        finally:
            self._lock.release()

    def store(self, body: dict) -> dict:
        self._body, self._checked_at = body, self._clock()
        return body


def _unavailable(reason: str) -> dict:
    return {"status": "unavailable", "redis": {"ok": False}, "workers": {"ok": False,
                                                                        "error": reason}}


def _redis_health(store) -> dict:
    started = time.monotonic()
    try:
        store.ping()
    except redis.RedisError as exc:
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, "latencyMs": round((time.monotonic() - started) * 1000, 1)}


def _worker_health(services) -> dict:
    nonce = str(uuid.uuid4())
    started = time.monotonic()
    services.store.enqueue(services.dispatcher.ping_message(nonce, PING_DEADLINE_SECONDS))
    while time.monotonic() - started < PING_DEADLINE_SECONDS:
        holder = services.store.pong(nonce)
        if holder:
            return {"ok": True, "answeredBy": holder,
                    "latencyMs": round((time.monotonic() - started) * 1000, 1)}
        time.sleep(0.02)
    busy = services.store.active_leases()
    return {"ok": busy > 0, "answeredBy": None, "busy": busy}


def check(services) -> dict:
    body = {"redis": _redis_health(services.store)}
    if body["redis"]["ok"]:
        try:
            body["workers"] = _worker_health(services)
        except Exception as exc:  # the broker refused the ping: the workers are unreachable
            body["workers"] = {"ok": False, "error": type(exc).__name__}
    else:
        body["workers"] = {"ok": False, "error": "Redis is not reachable"}
    healthy = body["redis"]["ok"] and body["workers"]["ok"]
    body["status"] = "ok" if healthy else "unavailable"
    return body


def _public(body: dict) -> dict:
    """What anyone may see: up or down, no host names, process ids or timings."""
    return {"status": body["status"], "redis": {"ok": body["redis"]["ok"]},
            "workers": {"ok": body["workers"]["ok"]}}


def _has_session() -> bool:
    try:
        current_caller()
    except NotAuthenticated:
        return False
    return True


@blp.route("")
class Health(MethodView):
    @blp.doc(security=[{}, {"X-VCAV-Auth": []}])
    @blp.response(200, HealthSchema, content_type=RESPONSE_TYPE)
    @blp.alt_response(503, schema=HealthSchema, content_type=RESPONSE_TYPE,
                      description="Redis or the workers are not answering.")
    def get(self):
        """Redis reachable and at least one worker answering a ping task in time.

        Without a session: the status of the last check (at most a few seconds old) and no
        details. With a session: a check made now, with latencies and the answering worker.
        """
        services = app_services()
        if _has_session():
            body = services.health.store(check(services))
        else:
            body = _public(services.health.get(lambda: check(services)))
        return body, 200 if body["status"] == "ok" else 503
