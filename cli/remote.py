"""The REST API as the client sees it: vCDA 4.5 media type, token header, errors as exit codes."""

from __future__ import annotations

from typing import Any

import requests

from cli.errors import (
    NOT_AUTHENTICATED,
    UNREACHABLE,
    ClientError,
    describe_api_error,
    exit_code_for_status,
)

ACCEPT = "application/vnd.vmware.h4-v4.5+json;charset=UTF-8"
TOKEN_HEADER = "X-VCAV-Auth"
# (connect, read): a server that accepts the connection but never answers still ends the run.
TIMEOUT = (10.0, 120.0)


class ApiRequestError(ClientError):
    """An ApiError answer: keeps the status and the code so callers can tell cases apart."""

    def __init__(self, status: int, error: dict[str, Any], hint: str = "") -> None:
        super().__init__(describe_api_error(error) + hint, exit_code_for_status(status))
        self.status, self.code = status, str(error.get("code", ""))


class Api:
    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.http = requests.Session()
        self.http.headers["Accept"] = ACCEPT
        if token:
            self.http.headers[TOKEN_HEADER] = token

    def call(self, method: str, path: str, expect: tuple[int, ...] = (200,),
             **kwargs: Any) -> requests.Response:
        """One request; any answer outside `expect` raises with the server's `code: msg`."""
        try:
            response = self.http.request(method, self.url + path, timeout=TIMEOUT, **kwargs)
        except requests.ConnectionError as exc:
            raise ClientError(f"cannot reach {self.url}: {_reason(exc)}", UNREACHABLE) from None
        except requests.Timeout:
            raise ClientError(f"{self.url} did not answer in time", UNREACHABLE) from None
        if response.status_code not in expect:
            raise ApiRequestError(response.status_code, _api_error(response),
                                  self._hint(response.status_code))
        return response

    def _hint(self, status: int) -> str:
        if status == 401 and TOKEN_HEADER in self.http.headers:
            return " (the session has ended: run `h4backup login`)"
        return ""

    def json(self, method: str, path: str, expect: tuple[int, ...] = (200,),
             **kwargs: Any) -> Any:
        return self.call(method, path, expect, **kwargs).json()

    def login(self, user: str, password: str) -> tuple[dict[str, Any], str]:
        """Session details and the token; bad credentials are exit code 3."""
        body = {"type": "localUser", "localUser": user, "localPassword": password}
        response = self.call("POST", "/sessions", json=body)
        token = response.headers.get(TOKEN_HEADER)
        if not token:
            raise ClientError("the server sent no session token", NOT_AUTHENTICATED)
        return response.json(), token

    def task(self, task_id: str) -> dict[str, Any]:
        return self.json("GET", f"/tasks/{task_id}")

    def backups(self) -> list[dict[str, Any]]:
        return self.json("GET", "/backups")


def _api_error(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "code" in body:
        return body
    return {"code": f"HTTP{response.status_code}", "msg": response.reason or ""}


def _reason(exc: requests.ConnectionError) -> str:
    """The innermost cause, e.g. `Connection refused`, without urllib3's long wrapper text."""
    text = str(exc.args[0] if exc.args else exc)
    return text.rsplit("] ", 1)[-1].rstrip("')\"") if "] " in text else text
