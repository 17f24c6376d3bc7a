"""Who is calling: the session behind the `X-VCAV-Auth` token, and what they may do."""

from __future__ import annotations

import hmac
from collections import OrderedDict
from dataclasses import dataclass
from functools import wraps

from flask import g, request

from api.services import app_services
from common import logs
from common.errors import Forbidden, NotAuthenticated
from common.secrecy import token_digest
from common.store import Created, SessionGate
from common.store.users import TaskDocument
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


def caller_and_document(task_id: str) -> tuple[Caller, TaskDocument | None]:
    """current_caller and a task's ready document with its owner, in one round trip."""
    digest = _request_digest()
    services = app_services()
    session, task = services.store.touch_session_and_get_document(
        digest, services.settings.session_idle_seconds, task_id)
    g.caller = _caller_of(session, digest)
    return g.caller, task


def caller_and_task(task_id: str) -> tuple[Caller, TaskRow | None]:
    """current_caller and a task row, read together in one round trip when the request has
    not authenticated yet: the task poll is the call clients make most."""
    if "caller" in g:
        return g.caller, app_services().store.get_task(task_id)
    g.caller, task = _authenticate(task_id)
    return g.caller, task


def _authenticate(task_id: str | None) -> tuple[Caller, TaskRow | None]:
    digest = _request_digest()
    services = app_services()
    session, task = services.store.touch_session_and_get_task(
        digest, services.settings.session_idle_seconds, task_id)
    return _caller_of(session, digest), task


def _request_digest() -> str:
    token = request.headers.get(TOKEN_HEADER, "")
    if not token or len(token) > 512:
        raise NotAuthenticated()
    return token_digest(token)


def _caller_of(session: dict | None, digest: str) -> Caller:
    # The lookup is by digest already; compare once more in constant time so no code path
    # depends on how much of a token matched.
    if not session or not hmac.compare_digest(session["digest"], digest):
        _seen.forget(digest)
        raise NotAuthenticated()
    caller = Caller(session["user"], tuple(session["roles"]), digest)
    _seen.remember(caller)
    logs.bind(user=caller.user)
    return caller


class _SeenSessions:
    """Who each token belonged to when this process last checked its session, for the
    writes that check the session in their own script (`gated_admin`): a hint that lets
    them declare the user's keys up front, never a reason to let a request through."""

    def __init__(self, size: int) -> None:
        self._callers: OrderedDict[str, Caller] = OrderedDict()
        self._size = size

    def remember(self, caller: Caller) -> None:
        self._callers[caller.digest] = caller
        self._callers.move_to_end(caller.digest)
        while len(self._callers) > self._size:
            self._callers.popitem(last=False)

    def forget(self, digest: str) -> None:
        self._callers.pop(digest, None)

    def get(self, digest: str) -> Caller | None:
        return self._callers.get(digest)


_seen = _SeenSessions(4096)


def gated_admin(view):
    """For a view whose one Redis write checks the session itself (`write_gate`): a request
    without a token is refused at once; a token this process has not seen yet, or whose
    user was no administrator, is checked now, the usual way."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        digest = _request_digest()
        hint = _seen.get(digest)
        if hint is not None and hint.is_admin:
            g.gate_caller = hint
            logs.bind(user=hint.user)
        elif not current_caller().is_admin:
            raise Forbidden()
        return view(*args, **kwargs)

    return wrapper


def write_gate() -> SessionGate | None:
    """The session check for the request's write to make, or None when it was made."""
    hint = g.get("gate_caller")
    if hint is None or "caller" in g:
        return None
    return SessionGate(hint.digest, hint.user, ADMIN_ROLE,
                       app_services().settings.session_idle_seconds)


def acting_caller() -> Caller:
    """Who the request acts for: checked already, or about to be by its write's gate."""
    return g.get("caller") or g.gate_caller


def settle_gate(created: Created) -> None:
    """The caller as the write's own session check found it."""
    if created.outcome == "unauthenticated":
        _seen.forget(g.gate_caller.digest)
        raise NotAuthenticated()
    if created.outcome == "forbidden":
        _seen.forget(g.gate_caller.digest)
        raise Forbidden()
    if "caller" not in g:
        g.caller = g.gate_caller


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
