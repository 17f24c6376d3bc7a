"""POST/GET/DELETE /sessions: log in with a local user, see who you are, log out."""

from __future__ import annotations

from flask import current_app, request
from flask.views import MethodView

from api.auth import TOKEN_HEADER, current_caller
from api.blueprint import Blueprint
from api.schemas import SessionDetailsSchema, SessionRequestSchema
from common.errors import InvalidCredentials, TooManyRequests
from common.secrecy import check_password, new_token, token_digest

blp = Blueprint("sessions", __name__, url_prefix="/sessions",
                description="Log in and out; the token travels in the X-VCAV-Auth header.")

# Checked when the user does not exist, so that a wrong user name costs as long as a wrong
# password and timing does not reveal which user names exist.
_DUMMY_HASH = ("scrypt$32768$8$1$00000000000000000000000000000000$"
               "0000000000000000000000000000000000000000000000000000000000000000")


def _throttle_keys(settings, user: str) -> list[tuple[str, int]]:
    """Failures are counted per user name and per client address, each with its own limit."""
    return [(f"user:{user}", settings.login_failures_per_user),
            (f"addr:{request.remote_addr}", settings.login_failures_per_address)]


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
        """Log in as a local user. Repeated failures are throttled (429 with Retry-After)."""
        services = current_app.extensions["h4"]
        throttle = _throttle_keys(services.settings, body["localUser"])
        retry_after = services.store.login_retry_after(throttle)
        if retry_after:
            raise TooManyRequests(retry_after)
        user = services.store.get_user(body["localUser"])
        stored = user["password"] if user else _DUMMY_HASH
        if not check_password(body["localPassword"], stored) or user is None:
            services.store.note_login_failure([key for key, _ in throttle],
                                              services.settings.login_window_seconds)
            raise InvalidCredentials()
        services.store.clear_login_failures(throttle[0][0])
        token = new_token()
        services.store.create_session(token_digest(token), user["name"], user["roles"],
                                      services.settings.session_idle_seconds)
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
        current_app.extensions["h4"].store.delete_session(caller.digest)
