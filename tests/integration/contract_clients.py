"""vCDA clients as they exist in the wild, and the contract's shapes, for the contract suite.

Two real client families call the vCDA 4.5 API, and they negotiate media types differently:
the Terraform provider names the vendor type on every request and body, while VMware's
PowerShell module logs in without an Accept header and then echoes the login response's
Content-Type back as its Accept (Ansible does the same). A service that satisfies one can still
break the other, so every endpoint is driven in both styles.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable
from typing import Any

import requests

from tests.integration.harness import wait_until

VENDOR_JSON = "application/vnd.vmware.h4-v4.5+json;charset=UTF-8"
TIMEOUT = 60

API_TASK_FIELDS = {"endTime", "error", "id", "lastUpdated", "progress", "result", "resultType",
                   "startTime", "state", "user", "warnings", "workflowInfo"}
WORKFLOW_INFO_FIELDS = {"type", "resourceType", "resourceId", "resourceName"}
API_ERROR_FIELDS = {"args", "code", "msg", "stacktrace"}
BACKUP_INFO_FIELDS = {"id", "generatedOn", "hash"}
SESSION_FIELDS = {"user", "roles", "authenticatedSites"}
ABOUT_FIELDS = {"buildDate", "buildVersion", "instanceId", "productName", "serviceType"}
SITE_FIELDS = {"site", "description", "apiUrl", "apiPublicUrl", "apiThumbprint", "apiVersion",
               "buildVersion", "isLocal", "state"}
HEALTH_ERRORS = ("lsError", "dbError", "ntpError", "vcdError", "managerError")
CLOUD_HEALTH_FIELDS = {"productName", "buildVersion", "buildDate", "instanceId", "runtimeId",
                       "currentTime", "address", "serviceBootTimestamp",
                       "applianceBootTimestamp", "diskUsage", *HEALTH_ERRORS}
# Every version the public clients send, in Accept and in Content-Type.
VENDOR_VERSIONS = ("1", "2", "3", "3.5", "4", "4.0", "4.1", "4.2", "4.3", "4.4", "4.5", "4.6",
                   "4.7")
VCDA_ROLES = {"EVERYONE", "ADMINISTRATORS", "VRADMINISTRATORS"}
VCDA_HASH = re.compile(r"^SHA-512:[0-9A-F]{2}(?::[0-9A-F]{2}){63}$")

_NO_BODY = object()


class VcdaClient:
    """Base: one HTTP connection pool, a token once logged in, and the style's headers."""

    style = "plain"

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = requests.Session()
        self.token: str | None = None
        self.service_alive: Callable[[], bool] = lambda: True

    def _headers(self, has_body: bool) -> dict[str, str]:
        raise NotImplementedError

    def request(self, method: str, path: str, body: Any = _NO_BODY,
                headers: dict[str, str] | None = None, auth: bool = True,
                **kwargs: Any) -> requests.Response:
        sent = self._headers(body is not _NO_BODY)
        if auth and self.token:
            sent["X-VCAV-Auth"] = self.token
        sent.update(headers or {})
        if body is not _NO_BODY:
            kwargs["data"] = json.dumps(body)
        kwargs.setdefault("timeout", TIMEOUT)
        return self.http.request(method, self.base_url + path, headers=sent, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = _NO_BODY, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def login(self, user: str, password: str) -> requests.Response:
        response = self.post("/sessions", {"type": "localUser", "localUser": user,
                                           "localPassword": password}, auth=False)
        if response.status_code == 200:
            self.token = response.headers["X-VCAV-Auth"]
        return response

    def wait_for_task(self, task_id: str, seconds: float = 60) -> dict:
        def finished():
            # A dead API or worker would leave the task RUNNING: say so now, not at the deadline.
            assert self.service_alive(), "a service process died; see the service logs"
            task = self.get(f"/tasks/{task_id}").json()
            return task if task["state"] != "RUNNING" else None

        return wait_until(finished, seconds, f"task {task_id}", interval=0.05)


class TerraformClient(VcdaClient):
    """terraform-provider-vcda: the versioned vendor type on Accept and on every JSON body."""

    style = "terraform"

    def _headers(self, has_body: bool) -> dict[str, str]:
        headers = {"Accept": VENDOR_JSON}
        if has_body:
            headers["Content-Type"] = VENDOR_JSON
        return headers


class PowerCliClient(VcdaClient):
    """The vendor PowerShell module: no Accept at login (requests drops a None header), then
    the login response's Content-Type as its Accept; plain JSON bodies."""

    style = "powercli"

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        self.accept: str | None = None

    def _headers(self, has_body: bool) -> dict[str, str | None]:
        headers = {"Accept": self.accept}
        if has_body:
            headers["Content-Type"] = "application/json"
        return headers

    def login(self, user: str, password: str) -> requests.Response:
        response = super().login(user, password)
        if response.status_code == 200:
            self.accept = response.headers["Content-Type"]
        return response


CLIENT_STYLES = {"terraform": TerraformClient, "powercli": PowerCliClient}


def vcda_sha512(data: bytes) -> str:
    """SHA-512 written as vCDA writes it: `SHA-512:` and upper-case hex pairs joined by `:`."""
    return "SHA-512:" + ":".join(f"{b:02X}" for b in hashlib.sha512(data).digest())


# --- shapes ----------------------------------------------------------------------------------

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_uuid(value: Any) -> bool:
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def assert_api_error(body: Any, code: str | None = None) -> dict:
    assert isinstance(body, dict) and set(body) == API_ERROR_FIELDS, body
    assert isinstance(body["args"], list) and all(isinstance(a, str) for a in body["args"]), body
    assert isinstance(body["code"], str) and body["code"], body
    assert isinstance(body["msg"], str) and body["msg"], body
    assert body["stacktrace"] == "", body
    if code is not None:
        assert body["code"] == code, body
    return body


def assert_error_response(response: requests.Response, status: int, code: str) -> dict:
    """An ApiError in the vendor JSON type with the given status and code, never HTML."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"] == VENDOR_JSON, response.headers
    return assert_api_error(response.json(), code)


def assert_backup_info(body: Any) -> dict:
    assert isinstance(body, dict) and set(body) == BACKUP_INFO_FIELDS, body
    assert _is_uuid(body["id"]), body
    assert _is_int(body["generatedOn"]) and body["generatedOn"] > 1_500_000_000_000, body
    assert isinstance(body["hash"], str) and VCDA_HASH.match(body["hash"]), body
    return body


def assert_session_details(body: Any, user: str) -> dict:
    assert isinstance(body, dict) and set(body) == SESSION_FIELDS, body
    assert body["user"] == user, body
    assert isinstance(body["roles"], list) and set(body["roles"]) <= VCDA_ROLES, body
    assert isinstance(body["authenticatedSites"], list), body
    for site in body["authenticatedSites"]:
        assert set(site) == {"org", "site"}, body
    return body


def assert_api_task(body: Any) -> dict:
    """Every ApiTask field with its type, and the rules that tie them to the state."""
    assert isinstance(body, dict) and set(body) == API_TASK_FIELDS, body
    assert _is_uuid(body["id"]), body
    assert body["state"] in {"RUNNING", "SUCCEEDED", "FAILED"}, body
    assert _is_int(body["progress"]) and 0 <= body["progress"] <= 100, body
    for name in ("startTime", "endTime", "lastUpdated"):
        assert _is_int(body[name]), (name, body)
    assert body["startTime"] > 1_500_000_000_000 and body["lastUpdated"] >= body["startTime"]
    assert isinstance(body["user"], str) and body["user"], body
    assert isinstance(body["warnings"], list), body
    for warning in body["warnings"]:
        assert_api_error(warning)
    info = body["workflowInfo"]
    assert isinstance(info, dict) and set(info) == WORKFLOW_INFO_FIELDS, body
    assert all(isinstance(info[name], str) for name in WORKFLOW_INFO_FIELDS), body
    if body["state"] == "RUNNING":
        assert body["endTime"] == -1 and body["progress"] < 100, body
        assert body["result"] is None and body["resultType"] is None, body
        assert body["error"] is None, body
    else:
        assert body["endTime"] >= body["startTime"], body
    if body["state"] == "SUCCEEDED":
        assert body["progress"] == 100 and body["error"] is None, body
    if body["state"] == "FAILED":
        assert body["result"] is None and body["resultType"] is None, body
        assert_api_error(body["error"])
    return body


def assert_task_list(body: Any) -> dict:
    assert isinstance(body, dict) and set(body) == {"items", "total"}, body
    assert isinstance(body["items"], list) and _is_int(body["total"]), body
    assert body["total"] >= len(body["items"]), body
    for item in body["items"]:
        assert_api_task(item)
    return body


def assert_about_info(body: Any) -> dict:
    assert isinstance(body, dict) and set(body) == ABOUT_FIELDS, body
    assert _is_int(body["buildDate"]) and body["buildDate"] > 1_500_000_000_000, body
    # A community module compares buildVersion with "3.5" as text.
    assert isinstance(body["buildVersion"], str) and body["buildVersion"].startswith("4.5")
    assert _is_uuid(body["instanceId"]), body
    assert body["productName"] == "h4backup" and body["serviceType"] == "CLOUD", body
    return body


def assert_site(body: Any) -> dict:
    assert isinstance(body, dict) and set(body) == SITE_FIELDS, body
    assert isinstance(body["site"], str) and body["site"], body
    assert body["apiUrl"].startswith(("http://", "https://")), body
    assert body["apiPublicUrl"] == body["apiUrl"] and body["apiThumbprint"] is None, body
    assert body["apiVersion"] == "4.5" and body["buildVersion"].startswith("4.5"), body
    assert body["isLocal"] is True and body["description"] == "", body
    assert body["state"] == {"incomingCommError": None, "outgoingCommError": None}, body
    return body


def assert_cloud_health_info(body: Any) -> dict:
    assert isinstance(body, dict) and set(body) == CLOUD_HEALTH_FIELDS, body
    for name in ("buildDate", "currentTime", "serviceBootTimestamp", "applianceBootTimestamp"):
        assert _is_int(body[name]) and body[name] > 1_000_000_000_000, (name, body)
    assert _is_uuid(body["instanceId"]) and _is_uuid(body["runtimeId"]), body
    assert isinstance(body["address"], str) and body["address"], body
    usage = body["diskUsage"]
    assert set(usage) == {"free", "total", "usable"}, body
    assert all(_is_int(usage[name]) for name in usage), body
    assert usage["total"] >= usage["free"] >= usage["usable"] >= 0, body
    for name in HEALTH_ERRORS:
        if body[name] is not None:
            assert_api_error(body[name])
    return body
