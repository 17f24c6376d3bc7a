"""The bare endpoint of bench.bare_app, served each way that bench.slow_clients compares.

    .venv/bin/python -m bench.slow_app --port 8099 --workers 2 --serve gevent

--serve gevent: the API's own serving options (cli.server.gunicorn_worker.ApiWorker); gthread: the
same options with gunicorn's gthread worker and 8 threads, as the API was served before;
uvicorn: uvicorn with the app behind a2wsgi (neither is a dependency of the project: install
them apart, e.g. `pip install --target DIR uvicorn a2wsgi h11` and PYTHONPATH=DIR).

Besides GET /ping it answers POST /upload, which reads its body as the API's POST routes do,
and answers a body that stalled past the worker's deadline with 408 and Connection: close,
as api/errors.py does.
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

from flask import request

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bare_app import app, gunicorn_options  # noqa: E402
from cli.server.gunicorn_app import GunicornServer  # noqa: E402
from common.config import load_settings  # noqa: E402

SERVES = ("gevent", "gthread", "uvicorn")


def upload() -> object:
    try:
        size = len(request.get_data())
    except Exception as exc:  # werkzeug reports a stalled body as a 400 caused by the timeout
        if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
            return {"code": "RequestTimeout"}, 408, {"Connection": "close"}
        raise
    return {"received": size}


# Once, though uvicorn imports this module again by name after `python -m` ran it as __main__.
if "upload" not in app.view_functions:
    app.add_url_rule("/upload", view_func=upload, methods=["POST"])


def nodelay_h11() -> type:
    """uvicorn's h11 protocol with TCP_NODELAY on each connection.

    With --workers uvicorn binds its socket with protocol 0, and asyncio then leaves Nagle on
    for the connections it accepts: every keep-alive response waits 40 ms for the client's
    delayed ACK. This sets what asyncio sets on a socket it binds itself.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class NoDelayH11Protocol(H11Protocol):
        def connection_made(self, transport) -> None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().connection_made(transport)

    return NoDelayH11Protocol


def __getattr__(name: str) -> object:
    # uvicorn's workers import the protocol by name; uvicorn is imported only when asked for.
    if name == "NoDelayH11Protocol":
        return nodelay_h11()
    raise AttributeError(name)


def asgi_app() -> object:
    """The WSGI app as uvicorn sees it (a factory: a2wsgi is imported only when asked for)."""
    from a2wsgi import WSGIMiddleware

    return WSGIMiddleware(app)


def serve_gunicorn(port: int, workers: int, serve: str) -> None:
    options = gunicorn_options(port, workers)
    if serve == "gthread":
        options = {**options, "worker_class": "gthread", "threads": 8}
    GunicornServer(options, lambda: app).run()


def serve_uvicorn(port: int, workers: int) -> None:
    import uvicorn

    # uvicorn has no deadline for a request's headers or body; its keep-alive is the nearest.
    uvicorn.run("bench.slow_app:asgi_app", factory=True, host="127.0.0.1", port=port,
                workers=workers, http="bench.slow_app:NoDelayH11Protocol", lifespan="off",
                access_log=False, log_level="warning",
                timeout_keep_alive=load_settings().header_timeout_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--serve", choices=SERVES, default="gevent")
    args = parser.parse_args()
    if args.serve == "uvicorn":
        serve_uvicorn(args.port, args.workers)
    else:
        serve_gunicorn(args.port, args.workers, args.serve)


if __name__ == "__main__":
    main()
