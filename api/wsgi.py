"""WSGI entry for gunicorn: `gunicorn api.wsgi:app`."""

from api import create_app
from common.config import load_settings
from common.logs import configure_logging

settings = load_settings()
configure_logging("api", settings.log_level)
app = create_app(settings)
