import json

import pytest
import redis

from api.media import RESPONSE_TYPE
from common.bootstrap import ADMIN_ROLES
from common.secrecy import hash_password
from tests.conftest import decode_message, login, queued

BACKUP_PASSWORD = "Pa$$w0rD!-unit"


def _api_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == RESPONSE_TYPE
    body = response.get_json(force=True)
    assert set(body) == {"args", "code", "msg", "stacktrace"}
    assert body["code"] == code and body["stacktrace"] == ""
    return body


def test_login_returns_session_details_and_token(client):
    response = client.post("/sessions", json={"type": "localUser", "localUser": "admin",
                                              "localPassword": "admin-secret-Pa$$"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == RESPONSE_TYPE
    assert response.get_json() == {"user": "admin", "roles": ADMIN_ROLES,
                                   "authenticatedSites": []}
    assert len(response.headers["X-VCAV-Auth"]) >= 40


def test_wrong_password_is_401(client):
    response = client.post("/sessions", json={"type": "localUser", "localUser": "admin",
                                              "localPassword": "nope"})
    _api_error(response, 401, "NotAuthenticated")


def test_unknown_user_is_401(client):
    response = client.post("/sessions", json={"type": "localUser", "localUser": "ghost",
                                              "localPassword": "nope"})
    _api_error(response, 401, "NotAuthenticated")


def test_get_session_needs_token_and_says_how(client):
    response = client.get("/sessions")
    _api_error(response, 401, "NotAuthenticated")
    # What the vendor's PowerCLI module looks for to see an expired session.
    assert response.headers["WWW-Authenticate"] == "Authentication Token Required"


def test_logout_ends_the_token_at_once(client):
    headers = login(client)
    assert client.get("/sessions", headers=headers).status_code == 200
    assert client.delete("/sessions", headers=headers).status_code == 204
    _api_error(client.get("/sessions", headers=headers), 401, "NotAuthenticated")


def test_post_backups_without_token_is_401(client):
    _api_error(client.post("/backups", json={}), 401, "NotAuthenticated")


def test_post_backups_by_non_admin_is_403(client, store):
    store.put_user("operator", hash_password("op-pass"), ["EVERYONE"])
    headers = login(client, "operator", "op-pass")
    body = _api_error(client.post("/backups", json={}, headers=headers), 403, "Forbidden")
    assert body["msg"] == "Permission denied."


def test_post_backups_returns_running_task_and_queues_message(client, store):
    headers = login(client)
    response = client.post("/backups", json={"password": BACKUP_PASSWORD}, headers=headers)
    assert response.status_code == 202
    assert response.headers["Content-Type"] == RESPONSE_TYPE
    task = response.get_json()
    assert set(task) == {"endTime", "error", "id", "lastUpdated", "progress", "result",
                         "resultType", "startTime", "state", "user", "warnings", "workflowInfo"}
    assert (task["state"], task["progress"], task["endTime"], task["user"]) == (
        "RUNNING", 0, -1, "admin")
    assert task["result"] is None and task["error"] is None and task["warnings"] == []
    assert task["workflowInfo"]["type"] == "backup"
    assert response.headers["Location"].endswith(f"/tasks/{task['id']}")
    assert queued(store) == [("h4.backup.generate", [task["id"]])]


def test_password_is_sealed_not_stored_in_clear(client, store):
    headers = login(client)
    client.post("/backups", json={"password": BACKUP_PASSWORD}, headers=headers)
    for key in store.redis.scan_iter("*"):
        dumped = json.dumps(store.redis.dump(key).decode("latin-1"))
        assert BACKUP_PASSWORD not in dumped


@pytest.mark.parametrize("body, content_type", [
    ('{"password": 5}', "application/json"),
    ('{"password": "x", "sources": ["/etc"]}', "application/json"),
    ('{"password": ', "application/json"),
    ('[1, 2]', "application/json"),
    ('[' * 5000 + ']' * 5000, "application/json"),
])
def test_bad_backup_bodies_are_400(client, body, content_type):
    headers = {**login(client), "Content-Type": content_type}
    _api_error(client.post("/backups", data=body, headers=headers), 400, "BadUserInput")


def test_non_json_body_is_415(client):
    headers = {**login(client), "Content-Type": "text/plain"}
    _api_error(client.post("/backups", data="hello", headers=headers), 415,
               "UnsupportedMediaType")


def test_vendor_request_type_with_charset_is_accepted(client):
    headers = {**login(client),
               "Content-Type": "application/vnd.vmware.h4-v4.5+json;charset=UTF-8"}
    assert client.post("/backups", data="{}", headers=headers).status_code == 202


def test_accept_of_an_unknown_h4_version_is_406(client):
    headers = {**login(client), "Accept": "application/vnd.vmware.h4-v9.9+json"}
    _api_error(client.get("/sessions", headers=headers), 406, "NotAcceptable")


@pytest.mark.parametrize("accept", ["application/json", "*/*",
                                    "application/vnd.vmware.h4-v4.5+json;charset=UTF-8"])
def test_usual_accepts_get_45(client, accept):
    headers = {**login(client), "Accept": accept}
    assert client.get("/sessions", headers=headers).status_code == 200


def test_quota_refuses_with_vcda_message(client):
    headers = login(client)
    for _ in range(3):
        assert client.post("/backups", json={}, headers=headers).status_code == 202
    body = _api_error(client.post("/backups", json={}, headers=headers), 409,
                      "BackupQuotaExceeded")
    assert body["msg"] == ("Backup quota exceeded. Number of allowed backups: 3, "
                           "current backup count: 3")


def test_refused_backup_queues_no_message(client, store):
    headers = login(client)
    accepted = [client.post("/backups", json={}, headers=headers).get_json()["id"]
                for _ in range(3)]
    assert client.post("/backups", json={}, headers=headers).status_code == 409
    assert queued(store) == [("h4.backup.generate", [task_id]) for task_id in accepted]


def test_redis_failure_at_creation_is_503_and_accepts_nothing(client, store, monkeypatch):
    headers = login(client)

    def unreachable(*_args, **_kwargs):
        raise redis.ConnectionError("connection refused")

    monkeypatch.setattr(store, "_create_backup_task", unreachable)
    _api_error(client.post("/backups", json={}, headers=headers), 503, "ServiceUnavailable")
    assert store.list_tasks() == [] and queued(store) == []


def test_task_of_other_user_is_404(client, store):
    headers = login(client)
    task_id = client.post("/backups", json={}, headers=headers).get_json()["id"]
    store.put_user("operator", hash_password("op-pass"), ["EVERYONE"])
    other = login(client, "operator", "op-pass")
    _api_error(client.get(f"/tasks/{task_id}", headers=other), 404, "TaskNotFound")
    assert client.get(f"/tasks/{task_id}", headers=headers).status_code == 200


def test_unknown_route_and_wrong_method_are_api_errors(client):
    _api_error(client.get("/nowhere"), 404, "NotFound")
    _api_error(client.put("/sessions"), 405, "MethodNotAllowed")


def test_operation_id_is_echoed(client):
    response = client.get("/sessions", headers={"operationID": "op-42"})
    assert response.headers["operationID"] == "op-42"


def _failed_login(client, user="admin", address="10.9.8.7"):
    return client.post("/sessions", json={"type": "localUser", "localUser": user,
                                          "localPassword": "wrong"},
                       environ_base={"REMOTE_ADDR": address})


def test_login_failures_are_throttled_per_address(client):
    for n in range(20):
        _failed_login(client, user=f"guess{n}")
    _api_error(_failed_login(client, user="another"), 429, "TooManyRequests")
    assert _failed_login(client, user="another", address="10.1.1.1").status_code == 401


def test_per_user_cap_on_running_tasks(client, store, settings):
    object.__setattr__(settings, "user_task_cap", 2)
    object.__setattr__(settings, "backup_quota", 100)
    headers = login(client)
    for _ in range(2):
        assert client.post("/backups", json={}, headers=headers).status_code == 202
    response = client.post("/backups", json={}, headers=headers)
    _api_error(response, 429, "TooManyTasks")
    assert response.headers["Retry-After"]


def test_password_over_one_kib_is_400(client):
    headers = login(client)
    _api_error(client.post("/backups", json={"password": "x" * 1025}, headers=headers), 400,
               "BadUserInput")


def test_health_without_any_worker_is_503(client, app, monkeypatch):
    monkeypatch.setattr("api.health.PING_DEADLINE_SECONDS", 0.1)
    response = client.get("/health")
    assert response.status_code == 503
    body = response.get_json()
    assert body["redis"]["ok"] and not body["workers"]["ok"] and body["status"] == "unavailable"


def test_health_with_an_answering_worker_is_200(client, store, monkeypatch):
    original = store.enqueue

    def queue_and_answer(message):
        original(message)
        name, (nonce,) = decode_message(message.payload)
        assert (message.queue, name) == ("h4backup.control", "h4.health.ping")
        store.record_pong(nonce, "host:1")

    monkeypatch.setattr(store, "enqueue", queue_and_answer)
    response = client.get("/health", headers=login(client))
    assert response.status_code == 200
    assert response.get_json()["workers"]["answeredBy"] == "host:1"


@pytest.mark.parametrize("kind", ["vcdCookie", "vcdCredentials", "ssoUser", "other"])
def test_other_login_types_are_a_400_naming_the_supported_ones(client, kind):
    response = client.post("/sessions", json={"type": kind, "vcdCookie": "x", "org": "o"})
    body = _api_error(response, 400, "BadUserInput")
    assert "supports: localUser" in body["msg"] and kind in body["msg"]


def test_logout_is_204_without_a_content_type(client):
    headers = login(client)
    response = client.delete("/sessions", headers=headers)
    assert response.status_code == 204 and "Content-Type" not in response.headers
    assert response.data == b""
