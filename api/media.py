"""Media types: vCDA's vendor JSON types, negotiated from what callers send, and body checks.

Public vCDA clients name many API versions: the vendor PowerShell module and Ansible log in
without an Accept and then echo the login response's Content-Type on every call, the Terraform
provider sends 4.5 (1.x) or 4.7 (2.x), scripts and community modules 1 to 4.3, each with or
without `;charset=UTF-8`. The backup API is the same in all of them, so every version in
SPOKEN_VERSIONS is accepted, in Accept and in Content-Type alike, and the response says the
version the caller picked. Only an Accept that names nothing but other h4 versions is refused
(406).
"""

from __future__ import annotations

import functools
import json
import re

from flask import Response, g, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header

from common.errors import BadUserInput, NotAcceptable, PayloadTooLarge, UnsupportedMediaType

API_VERSION = "4.5"
# Every version the public clients send. No public source lists what a 4.5 appliance accepts;
# these are the ones real clients are known to name.
SPOKEN_VERSIONS = ("1", "2", "3", "3.5", "4", "4.0", "4.1", "4.2", "4.3", "4.4", "4.5", "4.6",
                   "4.7")
PLAIN_JSON = "application/json"
VENDOR_TYPE = f"application/vnd.vmware.h4-v{API_VERSION}+json"
RESPONSE_TYPE = f"{VENDOR_TYPE};charset=UTF-8"
PLAIN_RESPONSE_TYPE = f"{PLAIN_JSON};charset=UTF-8"
H4_TYPE = re.compile(r"^application/vnd\.vmware\.h4-v([0-9][0-9.]*)\+json$")
# What a JSON body may be sent as (lower case, without parameters).
JSON_REQUEST_TYPES = frozenset([PLAIN_JSON] + [f"application/vnd.vmware.h4-v{version}+json"
                                               for version in SPOKEN_VERSIONS])


def vendor_type(version: str) -> str:
    return f"application/vnd.vmware.h4-v{version}+json;charset=UTF-8"


def _spoken(media_type: str) -> str | None:
    """The version of an h4 type this service speaks, else None."""
    match = H4_TYPE.match(media_type)
    return match.group(1) if match and match.group(1) in SPOKEN_VERSIONS else None


def check_accept() -> None:
    """Negotiate the response type (kept in `g.response_type`); 406 when the caller accepts
    only h4 versions other than ours."""
    accept = request.headers.get("Accept", "")
    # A client sends the same few Accept values on every call: each is parsed only once,
    # unless it is too long to be worth keeping.
    negotiate = _negotiate_cached if len(accept) <= _CACHED_ACCEPT_LENGTH else _negotiate
    chosen = negotiate(accept)
    if isinstance(chosen, tuple):
        g.response_type = RESPONSE_TYPE
        raise not_acceptable(chosen)
    g.response_type = chosen


def not_acceptable(asked: tuple[str, ...]) -> NotAcceptable:
    """The 406, naming the types asked for (without parameters) and the versions spoken."""
    wanted, spoken = ", ".join(asked)[:_SHOWN_ACCEPT_LENGTH], ", ".join(SPOKEN_VERSIONS)
    return NotAcceptable(wanted, spoken, msg=(
        f"Cannot produce any of the accepted media types: {wanted}. This service speaks "
        f"application/vnd.vmware.h4-vX+json for X in {spoken}, and {PLAIN_JSON}."))


def _entries(accept: str) -> list[tuple[str, float]]:
    """(media type in lower case without parameters, quality), in the order sent."""
    entries = []
    for part in accept.split(","):
        media_type, params = parse_options_header(part)
        if not media_type:
            continue
        try:
            quality = float(params.get("q", 1))
        except ValueError:
            quality = 1.0
        entries.append((media_type.lower(), quality))
    return entries


def _negotiate(accept: str) -> str | tuple[str, ...]:
    """The response type for an Accept header, or the types asked for when none fits.

    A spoken h4 version wins (the highest quality, the first listed among equals); else plain
    JSON when the caller accepts it; else the 4.5 vendor type. Types that are neither JSON nor
    h4 (text/html...) get the 4.5 type rather than a 406, so a browser still gets an answer."""
    entries = _entries(accept)
    wanted = [(media_type, q) for media_type, q in entries if q > 0]
    if not entries:
        return RESPONSE_TYPE
    versions = [(-q, index, version) for index, (media_type, q) in enumerate(wanted)
                if (version := _spoken(media_type))]
    if versions:
        return vendor_type(min(versions)[2])
    if any(media_type == PLAIN_JSON for media_type, _ in wanted):
        return PLAIN_RESPONSE_TYPE
    if any(not H4_TYPE.match(media_type) for media_type, _ in wanted):
        return RESPONSE_TYPE
    return tuple(dict.fromkeys(media_type for media_type, _ in entries))


_CACHED_ACCEPT_LENGTH = 256
_SHOWN_ACCEPT_LENGTH = 256
_negotiate_cached = functools.lru_cache(maxsize=256)(_negotiate)


def response_type() -> str:
    """The type negotiated for this request's JSON responses, errors included."""
    return g.get("response_type") or RESPONSE_TYPE


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


def document_response(document: str, status: int, headers: dict[str, str]) -> Response:
    """A JSON document the store keeps ready to send, sent as it is (no schema, no dump)."""
    return Response(document + "\n", status=status, headers=headers,
                    content_type=response_type())


def use_vendor_type(response: Response) -> Response:
    """JSON responses in the negotiated type."""
    # The OpenAPI document stays plain JSON, for the generic tools that read it.
    if response.mimetype == PLAIN_JSON and request.path != "/openapi.json":
        response.headers["Content-Type"] = response_type()
    return response
