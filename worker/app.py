"""Worker entry: `celery -A worker.app worker`, or `h4backup worker`."""

from celery.signals import setup_logging

from common.celery_app import make_celery
from common.config import load_settings
from common.logs import configure_logging

settings = load_settings()
celery = make_celery(settings)
celery.conf.include = ["worker.tasks"]


@setup_logging.connect
def _json_logs(**_kwargs: object) -> None:
    """Keep Celery from installing its own handlers: every line is one JSON object."""
    configure_logging("worker", settings.log_level)
