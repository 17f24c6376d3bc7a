"""The REST API: create_app builds the Flask app around the store and the task dispatcher."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, g, request
from flask_smorest import Api
from werkzeug.middleware.proxy_fix import ProxyFix

from api import errors, media
from api.health import HealthCache
from api.schemas import ApiErrorSchema
from api.services import Services
from common import logs
from common.bootstrap import backup_storage, ensure_admin, transit_sealer
from common.config import Settings, load_settings
from common.starting import TaskStarter
from common.store import Store

OPERATION_ID = "operationID"
request_log = logging.getLogger("h4backup.api.requests")
# Endpoints whose body is a file streamed to disk rather than a JSON document.
STREAMED_UPLOADS = {"operations.Import"}


class H4Api(Api):
    """flask-smorest with vCDA's ApiError as the one error body."""

    ERROR_SCHEMA = ApiErrorSchema
    DEFAULT_RESPONSE_CONTENT_TYPE = media.RESPONSE_TYPE

    def handle_http_exception(self, error):
        return errors.error_response(errors.from_http_exception(error),
                                     headers=errors.kept_headers(error))


def create_app(settings: Settings | None = None, store: Store | None = None,
               dispatcher: Any = None) -> Flask:
    settings = settings or load_settings()
    app = Flask("h4backup")
    app.config.update(_flask_config(settings))
    store = store or Store.from_url(settings.redis, settings.task_ttl_seconds)
    if dispatcher is None:
        from api.dispatch import CeleryDispatcher
        from common.celery_app import make_celery

        dispatcher = CeleryDispatcher(make_celery(settings))
    sealer = transit_sealer(settings)
    starter = TaskStarter(store, settings, dispatcher.message, sealer)
    Services(settings, store, sealer, dispatcher, starter, HealthCache(),
             backup_storage(settings)).install(app)
    ensure_admin(store, settings)
    _trust_proxies(app, settings.proxy_hops)
    _register_hooks(app, settings)
    _register_blueprints(app)
    return app


def _trust_proxies(app: Flask, hops: int) -> None:
    """Behind H4_PROXY_HOPS proxies, the client's address, scheme and host are the ones they
    forward (X-Forwarded-For/Proto/Host): login throttling sees the real client, links say
    https. Without the setting those headers are ignored, so no client can forge them."""
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)


def _flask_config(settings: Settings) -> dict[str, Any]:
    return {
        "H4_DEBUG": settings.debug,
        # One byte over the limit: a chunked body (no Content-Length) is read that far, so a
        # body over the limit shows as such instead of being cut at the limit.
        "MAX_CONTENT_LENGTH": settings.max_body_bytes + 1,
        "API_TITLE": "h4backup",
        "API_VERSION": media.API_VERSION,
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "api-docs",
        "OPENAPI_SWAGGER_UI_URL": "/api-docs/assets/",
        "API_SPEC_OPTIONS": {
            "info": {"description": "Backup tasks, compatible with the VMware Cloud Director "
                                    "Availability 4.5 backup API, and more."},
            "components": {"securitySchemes": {"X-VCAV-Auth": {
                "type": "apiKey", "in": "header", "name": "X-VCAV-Auth"}}},
            "security": [{"X-VCAV-Auth": []}],
        },
        "JSON_SORT_KEYS": True,
    }


def _register_hooks(app: Flask, settings: Settings) -> None:
    @app.before_request
    def negotiate():
        g.operation_id = (request.headers.get(OPERATION_ID) or "")[:128] or None
        logs.clear()
        logs.bind(operationID=g.operation_id)
        media.check_accept()
        if request.endpoint in STREAMED_UPLOADS:
            media.check_upload(settings.max_import_bytes)
        else:
            media.check_body(settings.max_body_bytes)

    @app.after_request
    def decorate(response):
        if g.get("operation_id"):
            response.headers[OPERATION_ID] = g.operation_id
        request_log.info("%s %s %s", request.method, request.path, response.status_code)
        if response.status_code == 204:  # no content, so no content type either
            response.headers.pop("Content-Type", None)
            return response
        return media.use_vendor_type(response)


def _register_blueprints(app: Flask) -> None:
    from api import (
        alerts,
        backups,
        diagnostics,
        docs,
        health,
        metrics,
        operations,
        schedule,
        sessions,
        sites,
        tasks,
    )

    api = H4Api(app)
    app.register_blueprint(docs.assets)
    app.register_blueprint(metrics.blp)
    metrics.instrument(app)
    errors.register(app)
    for module in (sessions, backups, operations, schedule, tasks, health, diagnostics, sites,
                   alerts):
        api.register_blueprint(module.blp)
    _document_results(api)


def _document_results(api: H4Api) -> None:
    """Every kind's result type in the document, also those no route returns directly (an
    ApiTask's `result` holds them); BackupInfo is there already, from GET /backups."""
    from api.schemas import RESULT_SCHEMAS

    known = api.spec.components.schemas
    for name, schema in RESULT_SCHEMAS.items():
        if name not in known:
            api.spec.components.schema(name, schema=schema)
