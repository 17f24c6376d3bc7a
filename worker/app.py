"""Worker entry: `celery -A worker.app worker`, or `h4backup worker`."""

from celery.signals import setup_logging

from common.celery_app import make_celery
from common.config import load_settings
from common.logs import configure_logging

settings = load_settings()
celery = make_celery(settings)
celery.conf.include = ["worker.tasks"]
# The `component` of this process's log lines: `h4backup beat` says "beat".
component = "worker"


@setup_logging.connect
def _json_logs(**_kwargs: object) -> None:
    """Keep Celery from installing its own handlers: every line is one JSON object."""
    configure_logging(component, settings.log_level)
