"""WSGI entry for gunicorn: `gunicorn api.wsgi:app`."""

from api import create_app
from common.logs import configure_logging

configure_logging("api")
app = create_app()
