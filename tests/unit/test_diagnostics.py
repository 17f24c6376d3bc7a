"""/diagnostics/about, /diagnostics/health, /sites and the task filters vCDA clients use."""

from __future__ import annotations

import uuid

import pytest
import redis

from api import create_app, diagnostics
from common.config import SettingsError, load_settings
from common.secrecy import hash_password
from common.tasks import new_task
from tests.conftest import login

ABOUT_FIELDS = {"buildDate", "buildVersion", "instanceId", "productName", "serviceType"}
HEALTH_FIELDS = {"productName", "buildVersion", "buildDate", "instanceId", "runtimeId",
                 "currentTime", "address", "serviceBootTimestamp", "applianceBootTimestamp",
                 "diskUsage", "lsError", "dbError", "ntpError", "vcdError", "managerError"}
SITE_FIELDS = {"site", "description", "apiUrl", "apiPublicUrl", "apiThumbprint", "apiVersion",
               "buildVersion", "isLocal", "state"}
WORKER_ANSWERED = {"status": "ok", "redis": {"ok": True, "latencyMs": 0.1},
                   "workers": {"ok": True, "answeredBy": "w0@test", "latencyMs": 1.0}}


@pytest.fixture
def fast_ping(monkeypatch):
    monkeypatch.setattr("api.health.PING_DEADLINE_SECONDS", 0.05)


@pytest.fixture
def worker_answers(app):
    """A check of a moment ago found a worker: the cache answers for it."""
    app.extensions["h4"].health.store(WORKER_ANSWERED)


# --- GET /diagnostics/about ------------------------------------------------------------------

def test_about_answers_without_a_session(client):
    response = client.get("/diagnostics/about")
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == ABOUT_FIELDS
    assert body["productName"] == "h4backup" and body["serviceType"] == "CLOUD"
    assert isinstance(body["buildDate"], int) and body["buildDate"] > 1_500_000_000_000


def test_about_build_version_reads_as_45(client):
    version = client.get("/diagnostics/about").get_json()["buildVersion"]
    assert version.startswith("4.5.0-h4backup.") and version >= "3.5"


def test_about_answers_with_a_session_too(client):
    assert client.get("/diagnostics/about", headers=login(client)).status_code == 200


def test_instance_id_is_made_once_for_the_installation(settings, store, dispatcher, client):
    first = client.get("/diagnostics/about").get_json()["instanceId"]
    other_process = create_app(settings, store=store, dispatcher=dispatcher).test_client()
    assert other_process.get("/diagnostics/about").get_json()["instanceId"] == first
    assert str(uuid.UUID(first)) == first


# --- GET and POST /diagnostics/health --------------------------------------------------------

@pytest.mark.parametrize("method", ["GET", "POST"])
def test_health_needs_a_session(client, method):
    response = client.open("/diagnostics/health", method=method)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Authentication Token Required"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_health_is_202_with_an_ended_task_and_its_location(client, worker_answers, method):
    response = client.open("/diagnostics/health", method=method, headers=login(client))
    assert response.status_code == 202
    task = response.get_json()
    assert response.headers["Location"].endswith(f"/tasks/{task['id']}")
    assert task["state"] == "SUCCEEDED" and task["progress"] == 100
    assert task["resultType"] == "CloudHealthInfo" and task["error"] is None
    assert task["endTime"] >= task["startTime"]
    assert task["workflowInfo"]["type"] == "health"
    assert task["workflowInfo"]["resourceType"] == "CLOUD"


def test_health_result_holds_what_clients_read(client, worker_answers):
    result = client.get("/diagnostics/health", headers=login(client)).get_json()["result"]
    assert set(result) == HEALTH_FIELDS
    assert {result[name] for name in ("lsError", "dbError", "ntpError", "vcdError",
                                      "managerError")} == {None}
    assert result["productName"] == "h4backup" and result["buildVersion"].startswith("4.5")
    assert result["address"] == "localhost"
    assert result["applianceBootTimestamp"] <= result["serviceBootTimestamp"]
    assert result["serviceBootTimestamp"] <= result["currentTime"]


def test_health_disk_usage_is_of_the_backup_folder(client, worker_answers):
    usage = client.get("/diagnostics/health", headers=login(client)).get_json()["result"][
        "diskUsage"]
    assert set(usage) == {"free", "total", "usable"}
    assert usage["total"] >= usage["free"] >= usage["usable"] > 0


def test_health_ids_match_about_and_this_process(client, worker_answers):
    headers = login(client)
    result = client.get("/diagnostics/health", headers=headers).get_json()["result"]
    assert result["instanceId"] == client.get("/diagnostics/about").get_json()["instanceId"]
    assert result["runtimeId"] == diagnostics.runtime_id()


def test_health_task_reads_back_the_same(client, worker_answers):
    headers = login(client)
    task = client.post("/diagnostics/health", headers=headers).get_json()
    assert client.get(f"/tasks/{task['id']}", headers=headers).get_json() == task


def test_no_worker_answering_is_a_manager_error(client, fast_ping):
    task = client.get("/diagnostics/health", headers=login(client)).get_json()
    assert task["state"] == "SUCCEEDED"
    assert task["result"]["managerError"]["code"] == "WorkerUnavailable"
    assert task["result"]["dbError"] is None


def test_health_checks_are_cached_like_health(client, store, fast_ping):
    headers = login(client)
    for _ in range(3):
        client.post("/diagnostics/health", headers=headers)
    assert store.redis.llen("h4backup.control") == 1


def test_a_check_that_cannot_run_ends_the_task_failed(client, worker_answers, monkeypatch):
    def broken(_folder):
        raise RuntimeError("statvfs exploded")

    monkeypatch.setattr(diagnostics, "disk_usage", broken)
    task = client.get("/diagnostics/health", headers=login(client)).get_json()
    assert task["state"] == "FAILED" and task["result"] is None and task["resultType"] is None
    assert task["error"]["code"] == "HealthCheckFailed"


def test_redis_away_is_503_and_records_nothing(client, store, worker_answers, monkeypatch):
    headers = login(client)

    def unreachable(*_args, **_kwargs):
        raise redis.ConnectionError("connection refused")

    monkeypatch.setattr(store, "record_finished_task", unreachable)
    response = client.get("/diagnostics/health", headers=headers)
    assert response.status_code == 503
    assert response.get_json()["code"] == "ServiceUnavailable"
    assert store.list_tasks() == []


def test_health_tasks_are_not_running_tasks(client, store, worker_answers):
    client.post("/diagnostics/health", headers=login(client))
    assert store.running_task_ids() == []


def test_recording_a_running_task_is_refused(store):
    with pytest.raises(ValueError):
        store.record_finished_task(new_task("admin", "health", "CLOUD", "x"))


# --- GET /sites ------------------------------------------------------------------------------

def test_sites_is_a_plain_list_of_the_local_site(client):
    response = client.get("/sites", headers=login(client))
    assert response.status_code == 200
    (site,) = response.get_json()
    assert set(site) == SITE_FIELDS
    assert site["site"] == "h4backup" and site["isLocal"] is True
    assert site["apiUrl"] == site["apiPublicUrl"] == "http://localhost"
    assert site["apiVersion"] == "4.5" and site["apiThumbprint"] is None
    assert site["state"] == {"incomingCommError": None, "outgoingCommError": None}


def test_one_site_by_name(client):
    headers = login(client)
    assert client.get("/sites/h4backup", headers=headers).get_json() == client.get(
        "/sites", headers=headers).get_json()[0]


def test_another_site_is_404(client):
    response = client.get("/sites/elsewhere", headers=login(client))
    assert response.status_code == 404 and response.get_json()["code"] == "SiteNotFound"


@pytest.mark.parametrize("path", ["/sites", "/sites/h4backup"])
def test_sites_need_a_session(client, path):
    assert client.get(path).status_code == 401


def test_site_name_setting(tmp_path):
    settings = load_settings({"H4_DATA_DIR": str(tmp_path), "H4_SITE_NAME": "cloud-1"})
    assert settings.site_name == "cloud-1"
    assert load_settings({"H4_DATA_DIR": str(tmp_path)}).site_name == "h4backup"


@pytest.mark.parametrize("name", ["has space", "slash/y", "x" * 65])
def test_bad_site_name_stops_the_start(tmp_path, name):
    with pytest.raises(SettingsError, match="H4_SITE_NAME"):
        load_settings({"H4_DATA_DIR": str(tmp_path), "H4_SITE_NAME": name})


# --- GET /tasks filters ----------------------------------------------------------------------

@pytest.fixture
def two_tasks(client, store, worker_answers):
    """One health task of the administrator (with an operationID), one of an operator."""
    admin = login(client)
    first = client.post("/diagnostics/health", headers={**admin, "operationID": "op-first"})
    store.put_user("operator", hash_password("op-pass"), ["EVERYONE"])
    second = client.post("/diagnostics/health", headers=login(client, "operator", "op-pass"))
    return {"headers": admin, "admin": first.get_json(), "operator": second.get_json()}


def _ids(client, headers, **query) -> set[str]:
    response = client.get("/tasks", headers=headers, query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"items", "total"} and body["total"] == len(body["items"])
    return {task["id"] for task in body["items"]}


def test_tasks_filter_by_site(client, two_tasks):
    both = {two_tasks["admin"]["id"], two_tasks["operator"]["id"]}
    assert _ids(client, two_tasks["headers"], site="h4backup") == both
    assert _ids(client, two_tasks["headers"], site="elsewhere") == set()


def test_tasks_filter_by_user_state_time_and_operation_id(client, two_tasks):
    headers, admin = two_tasks["headers"], two_tasks["admin"]
    assert _ids(client, headers, user="operator") == {two_tasks["operator"]["id"]}
    assert admin["id"] in _ids(client, headers, state="SUCCEEDED")
    assert _ids(client, headers, state="FAILED") == set()
    assert admin["id"] in _ids(client, headers, startTimeAfter=admin["startTime"] - 1)
    assert _ids(client, headers, startTimeAfter=two_tasks["operator"]["startTime"]) == set()
    assert _ids(client, headers, operationID="op-first") == {admin["id"]}
