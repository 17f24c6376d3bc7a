"""CPU per request of the API's own code, called in-process through WSGI, beside two yardsticks.

    .venv/bin/python -m bench.api_inprocess [--requests 3000]

No HTTP server and no network client: each request is a WSGI call, so the figures are what
the application itself costs, without gunicorn's share (about the same for every endpoint)
and without wrk's. The yardsticks: a bare Flask route answering a fixed JSON document (the
one `bench.service_api_load` loads), and a lean Flask route that does only what a task poll
cannot skip: the store's one round trip for the session and the task's ready document, sent
as it is.
The gap from the lean route to ours is what the request hooks, flask-smorest, the schemas and
the metrics cost. Needs redis-server (a private one is started).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flask import Flask, Response, request  # noqa: E402
from werkzeug.test import EnvironBuilder  # noqa: E402

from bench.bare_app import app as bare_app  # noqa: E402
from bench.servicelib import ACCEPT, PrivateRedis, machine_note, make_tiny_source  # noqa: E402
from common.secrecy import token_digest  # noqa: E402

ADMIN_PASSWORD = "bench-admin-Pa55"
WARMUP = 300


def per_request_us(app: Flask, path: str, headers: dict[str, str], count: int,
                   method: str = "GET", body: str | None = None) -> float:
    """Median over three runs of the CPU microseconds of one WSGI call."""
    environ = EnvironBuilder(path=path, method=method, headers=headers, data=body,
                             content_type="application/json" if body else None).get_environ()

    statuses: list[str] = []

    def call() -> None:
        b"".join(app(dict(environ, **{"wsgi.input": _body(body)}),
                     lambda status, *_rest: statuses.append(status)))

    for _ in range(WARMUP):
        call()
    if not all(status[:1] == "2" for status in statuses):
        raise SystemExit(f"{method} {path} answered {sorted(set(statuses))}")
    runs = []
    for _ in range(3):
        started = time.process_time()
        for _ in range(count):
            call()
        runs.append((time.process_time() - started) * 1e6 / count)
    return sorted(runs)[1]


def _body(body: str | None) -> io.BytesIO:
    return io.BytesIO(body.encode() if body else b"")


def lean_app(store, idle: int) -> Flask:
    app = Flask("lean")

    @app.get("/tasks/<uuid:task_id>")
    def task(task_id) -> Response:
        digest = token_digest(request.headers["X-VCAV-Auth"])
        _session, task = store.touch_session_and_get_document(digest, idle, str(task_id))
        return Response(task.document, content_type="application/json")

    return app


def service_app(redis_url: str, folder: Path) -> Flask:
    os.environ.update({
        "H4_REDIS_URL": redis_url, "H4_DATA_DIR": str(folder / "data"),
        "H4_ADMIN_PASSWORD": ADMIN_PASSWORD, "H4_LOG_LEVEL": "WARNING",
        "H4_BACKUP_QUOTA": "100000", "H4_USER_TASK_CAP": "100000",
        "H4_SOURCES": f"tiny={make_tiny_source(folder / 'source')}"})
    from api import create_app

    return create_app()


def login(app: Flask) -> dict[str, str]:
    client = app.test_client()
    response = client.post("/sessions", headers={"Accept": ACCEPT}, json={
        "type": "localUser", "localUser": "admin", "localPassword": ADMIN_PASSWORD})
    if response.status_code != 200:
        raise SystemExit(f"login answered {response.status_code}")
    return {"Accept": ACCEPT, "X-VCAV-Auth": response.headers["X-VCAV-Auth"]}


def measure(args: argparse.Namespace, folder: Path) -> list[tuple[str, float]]:
    redis = PrivateRedis(folder / "redis").start()
    try:
        app = service_app(redis.url, folder)
        headers = login(app)
        task_id = app.test_client().post("/backups", json={}, headers=headers).get_json()["id"]
        services = app.extensions["h4"]
        lean = lean_app(services.store, services.settings.session_idle_seconds)
        rows: list[tuple[str, Callable[[], float]]] = [
            ("bare Flask GET /ping", lambda: per_request_us(
                bare_app, "/ping", {"Accept": ACCEPT}, args.requests)),
            ("lean Flask GET /tasks/{id}", lambda: per_request_us(
                lean, f"/tasks/{task_id}", headers, args.requests)),
            ("ours GET /tasks/{id}", lambda: per_request_us(
                app, f"/tasks/{task_id}", headers, args.requests)),
            ("ours POST /backups", lambda: per_request_us(
                app, "/backups", headers, args.requests, "POST", '{"password": "bench-Pa55"}')),
        ]
        return [(name, run()) for name, run in rows]
    finally:
        redis.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="per run (3 runs, median)")
    args = parser.parse_args()
    print(f"machine: {machine_note()}")
    with tempfile.TemporaryDirectory(prefix="h4bench-inprocess-") as folder:
        rows = measure(args, Path(folder))
    bare = rows[0][1]
    print(f"\n{'WSGI call':<28} {'CPU us/req':>10} {'x bare':>7}")
    for name, micros in rows:
        print(f"{name:<28} {micros:10.0f} {micros / bare:7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
