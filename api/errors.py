"""Every error leaves the API as a vCDA ApiError in the vendor JSON type, never as HTML."""

from __future__ import annotations

import logging
import traceback
from typing import Any

import redis
from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from api.media import response_type
from api.services import app_services
from common import errors

log = logging.getLogger("h4backup.api")

# The vendor PowerShell module recognizes an ended session by exactly this challenge.
AUTHENTICATE_CHALLENGE = "Authentication Token Required"

_HTTP_ERRORS: dict[int, type[errors.H4Error]] = {
    400: errors.BadUserInput,
    401: errors.NotAuthenticated,
    403: errors.Forbidden,
    404: errors.RouteNotFound,
    405: errors.MethodNotAllowed,
    406: errors.NotAcceptable,
    413: errors.PayloadTooLarge,
    415: errors.UnsupportedMediaType,
    416: errors.RangeNotSatisfiable,
    422: errors.BadUserInput,
}


def error_response(error: errors.H4Error, stacktrace: str = "", headers: dict | None = None):
    shown = stacktrace if current_app.config.get("H4_DEBUG") else ""
    response = jsonify(error.to_api_error(shown))
    response.status_code = error.status
    response.headers["Content-Type"] = response_type()
    for name, value in (headers or {}).items():
        response.headers[name] = value
    if error.status == 408:  # the rest of a stalled body is not worth reading
        response.headers["Connection"] = "close"
    if error.status == 401:
        response.headers["WWW-Authenticate"] = AUTHENTICATE_CHALLENGE
    return response


# Headers an HTTP error must keep when it becomes an ApiError (405 names what is allowed).
_KEPT_HEADERS = ("Allow", "Content-Range", "Retry-After")


def kept_headers(exc: HTTPException) -> dict[str, str]:
    return {name: value for name, value in exc.get_headers() if name in _KEPT_HEADERS}


def _validation_detail(data: dict[str, Any]) -> str:
    messages = data.get("messages") or data.get("errors") or {}
    for location in messages.values():
        if isinstance(location, dict):
            return "; ".join(f"{field}: {_first(problem)}" for field, problem in location.items())
    return "the request is not valid"


def _first(problem: Any) -> str:
    if isinstance(problem, list) and problem:
        return _first(problem[0])
    if isinstance(problem, dict):
        return "; ".join(f"{k}: {_first(v)}" for k, v in problem.items())
    return str(problem)


def from_http_exception(exc: HTTPException) -> errors.H4Error:
    if isinstance(exc.__context__, TimeoutError):  # werkzeug reports a stalled body as a 400
        return errors.RequestTimeout(str(exc.__context__) or "no data")
    data = getattr(exc, "data", None)
    if exc.code in (400, 422) and data:
        return errors.BadUserInput(_validation_detail(data))
    if exc.code == 404:
        return errors.RouteNotFound(request.path)
    if exc.code == 405:
        return errors.MethodNotAllowed(request.method, request.path)
    if exc.code == 413:
        return errors.PayloadTooLarge(app_services().settings.max_body_bytes)
    kind = _HTTP_ERRORS.get(exc.code or 500)
    if kind is None:
        error = errors.H4Error(msg=exc.description or exc.name)
        error.status, error.code = exc.code or 500, exc.name.replace(" ", "")
        return error
    return kind(exc.description or exc.name)


def register(app: Flask) -> None:
    app.register_error_handler(
        errors.H4Error, lambda e: error_response(e, headers=getattr(e, "headers", None)))

    @app.errorhandler(redis.RedisError)
    def redis_down(exc: redis.RedisError):
        log.warning("redis unavailable: %s", type(exc).__name__)
        return error_response(errors.ServiceUnavailable("the task store is not reachable"),
                              headers={"Retry-After": "5"})

    @app.errorhandler(TimeoutError)
    def body_too_slow(exc: TimeoutError):
        # The serving worker stopped reading a body that fell behind; the connection ends.
        return error_response(errors.RequestTimeout(str(exc) or "no data"))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        if isinstance(exc, HTTPException):
            return error_response(from_http_exception(exc), headers=kept_headers(exc))
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(errors.GeneralServerFailure(), traceback.format_exc())
