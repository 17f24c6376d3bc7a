"""The yardstick for the API's throughput: one fixed JSON answer, served exactly as the API is.

    .venv/bin/python -m bench.bare_app --port 8099 --workers 2

Everything the API does per request beyond what Flask and gunicorn cost (session lookup in
Redis, schemas, the task row, the Celery message) shows as the gap to this endpoint.
"""

from __future__ import annotations

import argparse

from flask import Flask
from gunicorn.app.base import BaseApplication

app = Flask("bare")


@app.get("/ping")
def ping() -> dict[str, object]:
    return {"status": "ok", "version": "4.5", "items": [1, 2, 3]}


class BareServer(BaseApplication):
    def __init__(self, options: dict[str, object]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return app


def gunicorn_options(port: int, workers: int) -> dict[str, object]:
    """The values cli/gunicorn_app.py runs the API with, so only the application differs."""
    return {"bind": f"127.0.0.1:{port}", "workers": max(1, workers), "worker_class": "gthread",
            "threads": 8, "timeout": 120, "limit_request_line": 8190,
            "limit_request_field_size": 32768, "graceful_timeout": 30, "accesslog": None,
            "loglevel": "warning", "control_socket_disable": True}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    BareServer(gunicorn_options(args.port, args.workers)).run()


if __name__ == "__main__":
    main()
