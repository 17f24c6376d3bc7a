"""Who is calling: the session behind the `X-VCAV-Auth` token, and what they may do."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from functools import wraps

from flask import g, request

from api.services import app_services
from common import logs
from common.errors import Forbidden, NotAuthenticated
from common.secrecy import token_digest
from common.tasks import TaskRow

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
        g.caller, _ = _authenticate(None)
    return g.caller


def caller_and_task(task_id: str) -> tuple[Caller, TaskRow | None]:
    """current_caller and a task row, read together in one round trip when the request has
    not authenticated yet: the task poll is the call clients make most."""
    if "caller" in g:
        return g.caller, app_services().store.get_task(task_id)
    g.caller, task = _authenticate(task_id)
    return g.caller, task


def _authenticate(task_id: str | None) -> tuple[Caller, TaskRow | None]:
    token = request.headers.get(TOKEN_HEADER, "")
    if not token or len(token) > 512:
        raise NotAuthenticated()
    digest = token_digest(token)
    services = app_services()
    session, task = services.store.touch_session_and_get_task(
        digest, services.settings.session_idle_seconds, task_id)
    # The lookup is by digest already; compare once more in constant time so no code path
    # depends on how much of a token matched.
    if not session or not hmac.compare_digest(session["digest"], digest):
        raise NotAuthenticated()
    logs.bind(user=session["user"])
    return Caller(session["user"], tuple(session["roles"]), digest), task


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
