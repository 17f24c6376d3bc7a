"""The yardstick for the API's throughput: one fixed JSON answer, served exactly as the API is.

    .venv/bin/python -m bench.bare_app --port 8099 --workers 2

Everything the API does per request beyond what Flask and gunicorn cost (session lookup in
Redis, schemas, the task row, the Celery message) shows as the gap to this endpoint.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from flask import Flask

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cli.server.gunicorn_app import GunicornServer, serving_options  # noqa: E402
from common.config import load_settings  # noqa: E402

app = Flask("bare")


@app.get("/ping")
def ping() -> dict[str, object]:
    return {"status": "ok", "version": "4.5", "items": [1, 2, 3]}


def gunicorn_options(port: int, workers: int) -> dict[str, object]:
    """The API's own serving options, so only the application differs; plain HTTP, as the
    benchmarks run the service (`bench.servicelib.running_stack`)."""
    os.environ["H4_TLS"] = "off"  # the worker class reads its settings from the environment
    options = serving_options(f"127.0.0.1:{port}", workers, load_settings())
    return {**options, "loglevel": "warning"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    GunicornServer(gunicorn_options(args.port, args.workers), lambda: app).run()


if __name__ == "__main__":
    main()
