"""The API under gunicorn, started in-process so `h4backup api` needs no config file."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication

from common.config import Settings


class GunicornServer(BaseApplication):
    """gunicorn configured from a dict, serving what `load` returns (imported in the workers)."""

    def __init__(self, options: dict[str, object], load: Callable[[], Any]) -> None:
        self.options, self._load = options, load
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        return self._load()


def serving_options(bind: str, workers: int, settings: Settings) -> dict[str, object]:
    """How the API is served; the throughput benchmark serves its yardstick the same way."""
    return {
        "bind": bind,
        "workers": max(1, workers),
        # A greenlet per connection, with read deadlines: see cli/server/gunicorn_worker.py.
        "worker_class": "cli.server.gunicorn_worker.ApiWorker",
        "worker_connections": 1000,
        "keepalive": settings.header_timeout_seconds,
        "timeout": 120,
        # Let over-long ids and tokens reach the app, which answers them with an ApiError;
        # gunicorn would answer with plain text itself.
        "limit_request_line": 8190,
        "limit_request_field_size": 32768,
        "graceful_timeout": 30,
        "accesslog": None,
        # One control socket per user home would be shared by every API on the machine.
        "control_socket_disable": True,
    }


def _wsgi_app():
    from api.wsgi import app

    return app


def _json_logging(level: str) -> dict:
    """gunicorn's own lines in the service's JSON form, one object per line."""
    handler = {"class": "logging.StreamHandler", "formatter": "json",
               "stream": "ext://sys.stderr"}
    quiet = {"level": level, "handlers": ["console"], "propagate": False}
    # The app logs each request itself, with operationID and user; gunicorn's own access
    # line would only repeat it.
    silent = {"level": "CRITICAL", "handlers": [], "propagate": False}
    return {"version": 1, "disable_existing_loggers": False,
            "formatters": {"json": {"()": "common.logs.JsonFormatter", "component": "api"}},
            "handlers": {"console": handler},
            "root": {"level": level, "handlers": ["console"]},
            "loggers": {"gunicorn.error": quiet, "gunicorn.access": silent}}


def _child_exit(_server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def _metrics_dir() -> str | None:
    """Request metrics of all gunicorn workers are merged through files in one folder."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    folder = tempfile.mkdtemp(prefix="h4-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    return folder


def run_api(settings: Settings, workers: int) -> int:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    created = _metrics_dir()
    try:
        _serve(settings, host, workers)
    finally:
        if created:
            shutil.rmtree(created, ignore_errors=True)
    return 0


def _serve(settings: Settings, host: str, workers: int) -> None:
    _announce_certificate(settings)
    GunicornServer({
        **serving_options(f"{host}:{settings.port}", workers, settings),
        "loglevel": settings.log_level.lower(),
        "logconfig_dict": _json_logging(settings.log_level),
        "child_exit": _child_exit,
    }, _wsgi_app).run()


def _announce_certificate(settings: Settings) -> None:
    """The certificate made (when missing) and announced here, once, before the workers fork;
    the worker class speaks TLS itself (cli/server/gunicorn_worker.py), so gunicorn is given
    no TLS option."""
    if not settings.tls:
        return
    from cli.server.tls import fingerprint, tls_files

    files = tls_files(settings)
    print(f"h4backup: HTTPS certificate {files.cert}\n"
          f"h4backup: its SHA-256 fingerprint is {fingerprint(files.cert)}",
          file=sys.stderr, flush=True)
