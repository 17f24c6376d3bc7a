"""GET /health: Redis answers, and a worker really consumes (a ping task, answered in time).

A worker that is alive but no longer takes messages cannot answer the ping, so it shows as
unhealthy; workers that are all busy with backups hold renewed leases, which counts as alive.
"""

from __future__ import annotations

import time
import uuid

import redis
from flask import current_app
from flask.views import MethodView

from api.blueprint import Blueprint
from api.media import RESPONSE_TYPE
from api.schemas import HealthSchema

blp = Blueprint("health", __name__, url_prefix="/health", description="Service health.")

PING_DEADLINE_SECONDS = 3.0


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


@blp.route("")
class Health(MethodView):
    @blp.doc(security=[])
    @blp.response(200, HealthSchema, content_type=RESPONSE_TYPE)
    @blp.alt_response(503, schema=HealthSchema, content_type=RESPONSE_TYPE,
                      description="Redis or the workers are not answering.")
    def get(self):
        """Redis reachable and at least one worker answering a ping task in time."""
        services = current_app.extensions["h4"]
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
        return body, 200 if healthy else 503
