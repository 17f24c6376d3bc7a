"""Who is calling: the session behind the `X-VCAV-Auth` token, and what they may do."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from functools import wraps

from flask import current_app, g, request

from common import logs
from common.errors import Forbidden, NotAuthenticated
from common.secrecy import token_digest

TOKEN_HEADER = "X-VCAV-Auth"
ADMIN_ROLE = "ADMINISTRATORS"


@dataclass(frozen=True)
class Caller:
    user: str
    roles: tuple[str, ...]
    digest: str

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles


def current_caller() -> Caller:
    """The authenticated caller; raises NotAuthenticated without a live session."""
    if "caller" not in g:
        g.caller = _load_caller()
    return g.caller


def _load_caller() -> Caller:
    token = request.headers.get(TOKEN_HEADER, "")
    if not token or len(token) > 512:
        raise NotAuthenticated()
    digest = token_digest(token)
    services = current_app.extensions["h4"]
    session = services.store.touch_session(digest, services.settings.session_idle_seconds)
    # The lookup is by digest already; compare once more in constant time so no code path
    # depends on how much of a token matched.
    if not session or not hmac.compare_digest(session["digest"], digest):
        raise NotAuthenticated()
    logs.bind(user=session["user"])
    return Caller(session["user"], tuple(session["roles"]), digest)


def login_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        current_caller()
        return view(*args, **kwargs)

    return wrapper


def admin_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        if not current_caller().is_admin:
            raise Forbidden()
        return view(*args, **kwargs)

    return wrapper
