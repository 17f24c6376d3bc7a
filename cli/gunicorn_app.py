"""The API under gunicorn, started in-process so `h4backup api` needs no config file."""

from __future__ import annotations

from gunicorn.app.base import BaseApplication

from common.config import Settings


class _ApiServer(BaseApplication):
    def __init__(self, options: dict[str, object]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from api.wsgi import app

        return app


def run_api(settings: Settings, workers: int) -> int:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    _ApiServer({
        "bind": f"{host}:{settings.port}",
        "workers": max(1, workers),
        "worker_class": "gthread",
        "threads": 8,
        "timeout": 120,
        # Let over-long ids and tokens reach the app, which answers them with an ApiError;
        # gunicorn would answer with plain text itself.
        "limit_request_line": 8190,
        "limit_request_field_size": 32768,
        "graceful_timeout": 30,
        "accesslog": None,
        "loglevel": settings.log_level.lower(),
    }).run()
    return 0
