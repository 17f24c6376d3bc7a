"""POST/GET/DELETE /sessions: log in with a local user, see who you are, log out."""

from __future__ import annotations

import time

from flask import request
from flask.views import MethodView

from api.auth import TOKEN_HEADER, current_caller
from api.blueprint import Blueprint
from api.schemas import SessionDetailsSchema, SessionRequestSchema
from api.services import app_services
from common.bootstrap import ensure_admin
from common.config import Settings
from common.errors import InvalidCredentials, TooManyRequests
from common.secrecy import check_password, new_token, token_digest
from common.store import Store

blp = Blueprint("sessions", __name__, url_prefix="/sessions",
                description="Log in and out; the token travels in the X-VCAV-Auth header.")

# Checked when the user does not exist, so that a wrong user name costs as long as a wrong
# password and timing does not reveal which user names exist.
_DUMMY_HASH = ("scrypt$32768$8$1$00000000000000000000000000000000$"
               "0000000000000000000000000000000000000000000000000000000000000000")

# The login delay waits in the request's own thread and holds no lock: other users' logins,
# and this user's from elsewhere, are never queued behind it. Tests replace it.
pause = time.sleep


def client_address() -> str:
    """The caller's address; behind H4_PROXY_HOPS trusted proxies, ProxyFix has already put
    the client's own address here."""
    return request.remote_addr or "-"


def _refusing_keys(settings: Settings, user: str, address: str) -> list[tuple[str, int]]:
    """Failures counted per address and per (user, address) pair, each refusing (429) past
    its limit. A user's own count only slows its logins: guesses from elsewhere can never
    lock the real user out."""
    return [(f"addr:{address}", settings.login_failures_per_address),
            (f"pair:{address} {user}", settings.login_failures_per_user)]


def login_delay(settings: Settings, failures: int) -> float:
    """Seconds to wait before answering a login of a user with recent `failures`: the base
    after the first, doubling with each one, at most the cap."""
    if failures <= 0:
        return 0.0
    return min(settings.login_delay_ms * 2 ** min(failures - 1, 16),
               settings.login_delay_max_ms) / 1000


def _hold_back(settings: Settings, store: Store, user: str) -> list[str]:
    """Refuse a throttled login, wait out the user's delay; the keys a failure counts on."""
    refusing = _refusing_keys(settings, user, client_address())
    keys = [key for key, _ in refusing] + [f"user:{user}"]
    *counts, (user_failures, _) = store.login_failures(keys)
    waits = [max(ttl, 1) for (count, ttl), (_, limit) in zip(counts, refusing, strict=True)
             if count >= limit]
    if waits:
        raise TooManyRequests(max(waits))
    delay = login_delay(settings, user_failures)
    if delay:
        pause(delay)
    return keys


def _user(services, name: str) -> dict | None:
    """The user's record. The administrator's comes back from its settings when Redis lost it
    (a flush, a lost volume): otherwise nobody could log in until the API restarted."""
    user = services.store.get_user(name)
    if user is None and name == services.settings.admin_user:
        ensure_admin(services.store, services.settings)
        user = services.store.get_user(name)
    return user


def session_details(user: str, roles: list[str]) -> dict:
    return {"user": user, "roles": list(roles), "authenticatedSites": []}


@blp.route("")
class Sessions(MethodView):
    @blp.arguments(SessionRequestSchema)
    @blp.doc(security=[])
    @blp.response(200, SessionDetailsSchema, headers={TOKEN_HEADER: {
        "description": "The session token to send on later requests.",
        "schema": {"type": "string"}}})
    def post(self, body: dict):
        """Log in as a local user. Failures from one address, and for one user from one
        address, are throttled (429 with Retry-After); a user's failures delay its logins."""
        services = app_services()
        settings, store = services.settings, services.store
        counted = _hold_back(settings, store, body["localUser"])
        user = _user(services, body["localUser"])
        stored = user["password"] if user else _DUMMY_HASH
        if not check_password(body["localPassword"], stored) or user is None:
            store.note_login_failure(counted, settings.login_window_seconds)
            raise InvalidCredentials()
        token = new_token()
        if not store.create_session(token_digest(token), user["name"], user["roles"],
                                    settings.session_idle_seconds, user["generation"]):
            raise InvalidCredentials()  # the user changed while its password was checked
        store.clear_login_failures(*counted[1:])  # the pair's and the user's, not the address's
        return session_details(user["name"], user["roles"]), 200, {TOKEN_HEADER: token}

    @blp.response(200, SessionDetailsSchema)
    def get(self):
        """The current session."""
        caller = current_caller()
        return session_details(caller.user, list(caller.roles))

    @blp.response(204)
    def delete(self):
        """Log out: the token stops working at once."""
        caller = current_caller()
        app_services().store.delete_session(caller.digest)
