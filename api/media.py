"""Media types: vCDA's vendor JSON type on every response, and checks on what callers send.

Clients send `Accept: application/vnd.vmware.h4-vX.Y+json`, some plain `application/json`,
PowerCLI echoes the login response's Content-Type back as its Accept. Only an Accept that names
nothing but h4 versions this service does not speak is refused (406).
"""

from __future__ import annotations

import functools
import json
import re

from flask import Response, request
from werkzeug.datastructures import MIMEAccept
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_accept_header

from common.errors import BadUserInput, NotAcceptable, PayloadTooLarge, UnsupportedMediaType

API_VERSION = "4.5"
VENDOR_TYPE = f"application/vnd.vmware.h4-v{API_VERSION}+json"
RESPONSE_TYPE = f"{VENDOR_TYPE};charset=UTF-8"
H4_TYPE = re.compile(r"^application/vnd\.vmware\.h4-v([0-9.]+)\+json$")
JSON_REQUEST_TYPES = {"application/json", VENDOR_TYPE}


def check_accept() -> None:
    """406 when the caller accepts only h4 versions other than ours."""
    accept = request.headers.get("Accept", "")
    # A client sends the same few Accept values on every call: each is parsed only once,
    # unless it is too long to be worth keeping.
    known = _acceptable_cached if len(accept) <= _CACHED_ACCEPT_LENGTH else _acceptable
    if not known(accept):
        raise NotAcceptable(accept)


def _acceptable(accept: str) -> bool:
    offered = [value.lower() for value, _quality in parse_accept_header(accept, MIMEAccept)]
    versions = [H4_TYPE.match(value) for value in offered]
    return not offered or not all(versions) or any(
        m.group(1) == API_VERSION for m in versions if m)


_CACHED_ACCEPT_LENGTH = 256
_acceptable_cached = functools.lru_cache(maxsize=256)(_acceptable)


def has_body() -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get(
        "Transfer-Encoding", "").lower()


UPLOAD_TYPE = "application/octet-stream"


def check_upload(max_bytes: int) -> None:
    """An uploaded backup file: raw bytes, streamed, never parsed."""
    if request.mimetype != UPLOAD_TYPE:
        raise UnsupportedMediaType(request.mimetype or "(none)")
    request.max_content_length = max_bytes


# Refusing a body while the client still sends it makes the client see a reset instead of
# the 413: read and drop this much of the rest first.
DRAIN_BYTES = 8 << 20


def _too_large(max_bytes: int) -> PayloadTooLarge:
    source, left = request.environ.get("wsgi.input"), DRAIN_BYTES
    while source is not None and left > 0:
        block = source.read(min(1 << 16, left))
        if not block:
            break
        left -= len(block)
    return PayloadTooLarge(max_bytes)


def check_body(max_bytes: int) -> None:
    """Bodies must be JSON of a known type, under the size limit, and well formed."""
    if not has_body():
        return
    if request.content_length and request.content_length > max_bytes:
        raise _too_large(max_bytes)
    if request.mimetype not in JSON_REQUEST_TYPES:
        raise UnsupportedMediaType(request.mimetype or "(none)")
    try:
        data = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise _too_large(max_bytes) from None
    if len(data) > max_bytes:
        raise _too_large(max_bytes)
    check_json_text(data)


def _refuse_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A later duplicate would silently win ({"password": "a", "password": null})."""
    document: dict[str, object] = {}
    for key, value in pairs:
        if key in document:
            raise BadUserInput(f"the field {key!r} is given twice",
                               msg=f"The field {key!r} is given more than once.")
        document[key] = value
    return document


def check_json_text(data: bytes) -> None:
    """Well-formed JSON, no duplicate keys, and no lone surrogates (they are not Unicode)."""
    try:
        document = json.loads(data, object_pairs_hook=_refuse_duplicate_keys)
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadUserInput("the request body holds a lone surrogate escape",
                           msg="The request body holds text that is not valid Unicode.") from None
    except (ValueError, RecursionError):
        raise BadUserInput("the request body is not valid JSON",
                           msg="The request body is not valid JSON.") from None


def use_vendor_type(response: Response) -> Response:
    # The OpenAPI document stays plain JSON, for the generic tools that read it.
    if response.mimetype == "application/json" and request.path != "/openapi.json":
        response.headers["Content-Type"] = RESPONSE_TYPE
    return response
