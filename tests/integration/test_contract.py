"""The vCDA 4.5 backup API (Part A of the contract) on the real service, as real clients call it.

Every endpoint is driven in the two client styles of `contract_clients`, over HTTP to the API
under gunicorn, with Celery workers on a real redis-server doing the backups.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
import uuid

import pytest
import requests

from tests.integration.contract_clients import (
    CLIENT_STYLES,
    HEALTH_ERRORS,
    VENDOR_JSON,
    VENDOR_VERSIONS,
    VcdaClient,
    assert_about_info,
    assert_api_task,
    assert_backup_info,
    assert_cloud_health_info,
    assert_error_response,
    assert_session_details,
    assert_site,
    assert_task_list,
    vcda_sha512,
)
from tests.integration.harness import REPO, RedisServer, Service, stop_in_background, wait_until

pytestmark = pytest.mark.integration

BACKUP_PASSWORD = "Contract-Pa$$w0rD!"
VIEWER, VIEWER_PASSWORD = "auditor", "auditor-Pa55-w0rd!"
# Larger than the loopback socket buffers, so that a download is still streaming from the
# file when a DELETE arrives, and a backup is still RUNNING when it is first looked at.
BIG_FILE_BYTES = 20 * 1024 * 1024
QUOTA = 5
CONCURRENT_REQUESTS = 50
# The vendor PowerShell module recognizes an ended session by exactly this challenge.
TOKEN_CHALLENGE = "Authentication Token Required"
SITE = "h4backup"


# About the HTTP surface, not where backups are kept: the folder only, so CI time does not double.
@pytest.fixture(scope="module")
def backend():
    return "folder"


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory):
    """Replaces the shared tree for this module: one big incompressible file and a note."""
    root = tmp_path_factory.mktemp("contract-source") / "tree"
    root.mkdir()
    (root / "random.bin").write_bytes(random.Random(45).randbytes(BIG_FILE_BYTES))
    (root / "notes.txt").write_text("what vCDA would keep: configuration and certificates\n")
    return root


def connect(service: Service, style: str, user: str = "admin",
            password: str | None = None) -> VcdaClient:
    client = CLIENT_STYLES[style](service.url)
    client.service_alive = lambda: all(p.poll() is None for p in [service.api, *service.workers])
    response = client.login(user, password or service.admin_password)
    assert response.status_code == 200, response.text
    return client


@pytest.fixture(scope="module", params=sorted(CLIENT_STYLES))
def style(request):
    return request.param


@pytest.fixture(scope="module")
def client(service, style):
    return connect(service, style)


@pytest.fixture(scope="module")
def viewer_account(service):
    """A user without the administrator role, created the way an operator creates one."""
    subprocess.run([sys.executable, "-m", "cli.main", "user", "add", VIEWER],
                   env={**service.env(), "H4_NEW_USER_PASSWORD": VIEWER_PASSWORD}, cwd=REPO,
                   check=True, capture_output=True, timeout=60)
    return VIEWER


@pytest.fixture(scope="module")
def viewer(service, style, viewer_account):
    return connect(service, style, viewer_account, VIEWER_PASSWORD)


def backup_and_wait(client: VcdaClient, path: str = "/backups", body: dict | None = None,
                    **kwargs) -> tuple[requests.Response, dict]:
    accepted = client.post(path, {} if body is None else body, **kwargs)
    assert accepted.status_code == 202, accepted.text
    task = client.wait_for_task(accepted.json()["id"])
    assert task["state"] == "SUCCEEDED", task
    return accepted, task


@pytest.fixture(scope="module")
def backup(client, style):
    """One encrypted backup per client style, asked for with an operationID."""
    operation_id = f"op-contract-{style}-{uuid.uuid4().hex[:8]}"
    accepted, task = backup_and_wait(client, body={"password": BACKUP_PASSWORD},
                                     headers={"operationID": operation_id})
    return {"accepted": accepted, "task": task, "info": task["result"],
            "operationID": operation_id}


@pytest.fixture(scope="module")
def downloaded(client, backup):
    response = client.get(f"/backups/{backup['info']['id']}")
    assert response.status_code == 200, response.text[:300]
    return response


@pytest.fixture(scope="module")
def chosen_id_backup(client):
    """A backup whose id the client chose, asked for again while running and once done."""
    backup_id = str(uuid.uuid4())
    path = f"/backups/{backup_id}"
    first = client.post(path, {"password": BACKUP_PASSWORD})
    assert first.status_code == 202, first.text
    while_running = client.post(path, {"password": BACKUP_PASSWORD})
    task = client.wait_for_task(first.json()["id"])
    once_done = client.post(path, {"password": BACKUP_PASSWORD})
    return {"id": backup_id, "first": first, "while_running": while_running,
            "once_done": once_done, "task": task}


def task_list(client: VcdaClient, **query) -> dict:
    response = client.get("/tasks", params=query)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == VENDOR_JSON
    return assert_task_list(response.json())


def listed_ids(client: VcdaClient) -> list[str]:
    response = client.get("/backups")
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()]


# --- POST/GET/DELETE /sessions ---------------------------------------------------------------

def test_login_returns_session_details_and_token(service, style):
    client = CLIENT_STYLES[style](service.url)
    response = client.login("admin", service.admin_password)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == VENDOR_JSON
    assert len(response.headers["X-VCAV-Auth"]) >= 32
    body = assert_session_details(response.json(), "admin")
    assert "ADMINISTRATORS" in body["roles"]


def test_powercli_accepts_what_its_login_returned(service):
    client = connect(service, "powercli")
    assert client.accept == VENDOR_JSON
    response = client.get("/sessions")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == VENDOR_JSON


@pytest.mark.parametrize("content_type", [
    "application/json", "application/json;charset=UTF-8",
    "application/vnd.vmware.h4-v4.5+json", VENDOR_JSON])
def test_login_accepts_every_json_request_type(service, content_type):
    response = requests.post(f"{service.url}/sessions", timeout=30, data=json.dumps({
        "type": "localUser", "localUser": "admin", "localPassword": service.admin_password}),
        headers={"Content-Type": content_type})
    assert response.status_code == 200, response.text


def test_wrong_credentials_are_401_not_authenticated(service, style):
    response = CLIENT_STYLES[style](service.url).login(f"nobody-{style}", "not-a-password")
    assert_error_response(response, 401, "NotAuthenticated")


def test_get_session_describes_the_caller(client):
    response = client.get("/sessions")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == VENDOR_JSON
    assert "ADMINISTRATORS" in assert_session_details(response.json(), "admin")["roles"]


def test_get_session_without_token_is_401_with_www_authenticate(client):
    response = client.get("/sessions", auth=False)
    body = assert_error_response(response, 401, "NotAuthenticated")
    assert response.headers["WWW-Authenticate"] == TOKEN_CHALLENGE
    assert body["msg"] == "Authentication required."


def test_logout_is_204_and_the_token_stops_at_once(service, style):
    client = connect(service, style)
    response = client.delete("/sessions")
    assert response.status_code == 204 and response.content == b""
    reused = client.get("/sessions")
    body = assert_error_response(reused, 401, "NotAuthenticated")
    # What the vendor module's Connect-VCDA looks for to log in again.
    assert reused.headers["WWW-Authenticate"] == TOKEN_CHALLENGE
    assert body["msg"] == "Authentication required."


# --- POST /backups ---------------------------------------------------------------------------

def test_post_backups_is_202_with_a_running_task(service, backup):
    accepted = backup["accepted"]
    assert accepted.status_code == 202
    assert accepted.headers["Content-Type"] == VENDOR_JSON
    task = assert_api_task(accepted.json())
    assert task["state"] == "RUNNING" and task["endTime"] == -1, task
    assert task["result"] is None and task["resultType"] is None
    assert task["user"] == "admin" and task["warnings"] == []
    assert task["workflowInfo"]["type"] == "backup"
    assert task["workflowInfo"]["resourceType"] == "backup"


def test_post_backups_gives_the_task_location(service, backup):
    task_id = backup["accepted"].json()["id"]
    assert backup["accepted"].headers["Location"] == f"{service.url}/tasks/{task_id}"


def test_finished_backup_task_holds_backup_info(client, backup):
    response = client.get(f"/tasks/{backup['task']['id']}")
    assert response.status_code == 200 and response.headers["Content-Type"] == VENDOR_JSON
    task = assert_api_task(response.json())
    assert task["state"] == "SUCCEEDED" and task["progress"] == 100
    assert task["resultType"] == "BackupInfo"
    info = assert_backup_info(task["result"])
    assert task["workflowInfo"]["resourceId"] == info["id"]
    assert task["startTime"] <= info["generatedOn"] <= task["endTime"]


def test_operation_id_is_echoed_on_post_backups(backup):
    assert backup["accepted"].headers["operationID"] == backup["operationID"]


def test_operation_id_finds_its_task_in_the_list(client, backup):
    found = task_list(client, operationID=backup["operationID"])
    assert [t["id"] for t in found["items"]] == [backup["task"]["id"]]
    assert found["total"] == 1


def test_operation_id_is_on_the_worker_log_lines_of_its_task(service, backup):
    lines = []
    for line in service.logs().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    of_task = [line for line in lines if isinstance(line, dict)
               and line.get("component") == "worker" and line.get("taskId") == backup["task"]["id"]]
    assert of_task, "no worker log line names the task"
    assert {line.get("operationID") for line in of_task} == {backup["operationID"]}


def test_operation_id_is_echoed_on_errors(client):
    response = client.get("/tasks/not-a-task", headers={"operationID": "op-error-echo"})
    assert response.status_code == 404
    assert response.headers["operationID"] == "op-error-echo"


def test_backup_request_without_password_succeeds(client):
    _, task = backup_and_wait(client, body={})
    assert_backup_info(assert_api_task(task)["result"])


# --- POST /backups/{backupId} ----------------------------------------------------------------

def test_client_chosen_id_becomes_the_backup_id(chosen_id_backup):
    first = chosen_id_backup["first"]
    assert first.headers["Content-Type"] == VENDOR_JSON
    assert assert_api_task(first.json())["workflowInfo"]["resourceId"] == chosen_id_backup["id"]
    assert assert_backup_info(chosen_id_backup["task"]["result"])["id"] == chosen_id_backup["id"]


def test_repeating_a_client_chosen_id_returns_the_same_task(chosen_id_backup):
    task_id = chosen_id_backup["first"].json()["id"]
    for again in (chosen_id_backup["while_running"], chosen_id_backup["once_done"]):
        assert again.status_code == 202, again.text
        assert assert_api_task(again.json())["id"] == task_id
        assert again.headers["Location"].endswith(f"/tasks/{task_id}")


def test_repeating_a_client_chosen_id_never_makes_a_second_backup(client, chosen_id_backup):
    assert listed_ids(client).count(chosen_id_backup["id"]) == 1
    tasks = task_list(client, resourceId=chosen_id_backup["id"], type="backup")
    assert tasks["total"] == 1


# --- GET /backups ----------------------------------------------------------------------------

def test_backup_list_is_backup_infos_newest_first(client, backup, chosen_id_backup):
    response = client.get("/backups")
    assert response.status_code == 200 and response.headers["Content-Type"] == VENDOR_JSON
    listed = [assert_backup_info(item) for item in response.json()]
    assert {backup["info"]["id"], chosen_id_backup["id"]} <= {b["id"] for b in listed}
    assert backup["info"] in listed
    stamps = [b["generatedOn"] for b in listed]
    assert stamps == sorted(stamps, reverse=True)


def test_running_backup_is_not_listed(client):
    accepted = client.post("/backups", {})
    assert accepted.status_code == 202, accepted.text
    task = accepted.json()
    ids = listed_ids(client)
    still_running = client.get(f"/tasks/{task['id']}").json()["state"] == "RUNNING"
    finished = client.wait_for_task(task["id"])
    assert still_running, "the backup ended before the list was read; the test proves nothing"
    assert task["workflowInfo"]["resourceId"] not in ids
    assert finished["result"]["id"] in listed_ids(client)


# --- GET /backups/{backupId} -----------------------------------------------------------------

def test_download_is_the_file_with_its_headers(backup, downloaded):
    info = backup["info"]
    headers = downloaded.headers
    assert headers["Content-Type"] == "application/octet-stream"
    assert int(headers["Content-Length"]) == len(downloaded.content)
    assert headers["Content-Disposition"].startswith("attachment")
    assert info["id"] in headers["Content-Disposition"]
    assert headers["ETag"].strip('W/"')
    assert headers["Accept-Ranges"] == "bytes"


def test_downloaded_bytes_match_the_backup_hash(backup, downloaded):
    assert vcda_sha512(downloaded.content) == backup["info"]["hash"]


def test_range_request_is_206_with_content_range(client, backup, downloaded):
    size = len(downloaded.content)
    response = client.get(f"/backups/{backup['info']['id']}", headers={"Range": "bytes=100-1099"})
    assert response.status_code == 206, response.text[:300]
    assert response.headers["Content-Range"] == f"bytes 100-1099/{size}"
    assert response.content == downloaded.content[100:1100]


def test_range_past_the_end_is_416_api_error(client, backup, downloaded):
    size = len(downloaded.content)
    response = client.get(f"/backups/{backup['info']['id']}",
                          headers={"Range": f"bytes={size + 10}-"})
    assert_error_response(response, 416, "RangeNotSatisfiable")


def test_resumed_download_reassembles_to_the_backup_hash(client, backup):
    path = f"/backups/{backup['info']['id']}"
    first = client.get(path, headers={"Range": "bytes=0-4194303"})
    assert first.status_code == 206 and len(first.content) == 4 * 1024 * 1024
    size = int(first.headers["Content-Range"].rpartition("/")[2])
    rest = client.get(path, headers={"Range": f"bytes={len(first.content)}-"})
    assert rest.status_code == 206
    assert rest.headers["Content-Range"] == f"bytes {len(first.content)}-{size - 1}/{size}"
    assert vcda_sha512(first.content + rest.content) == backup["info"]["hash"]


def test_resume_guarded_by_if_range_etag_is_206(client, backup, downloaded):
    response = client.get(f"/backups/{backup['info']['id']}", headers={
        "Range": "bytes=1000-", "If-Range": downloaded.headers["ETag"]})
    assert response.status_code == 206
    assert response.content == downloaded.content[1000:]


def test_download_of_unknown_backup_is_404_backup_not_found(client):
    assert_error_response(client.get(f"/backups/{uuid.uuid4()}"), 404, "BackupNotFound")


# --- POST/GET /backups/cookie/{backupId} -----------------------------------------------------

def test_cookie_request_is_202_with_a_cookie(client, backup):
    response = client.post(f"/backups/cookie/{backup['info']['id']}")
    assert response.status_code == 202, response.text
    assert response.headers["Content-Type"] == VENDOR_JSON
    body = response.json()
    assert set(body) == {"cookie"} and isinstance(body["cookie"], str) and body["cookie"]


def test_download_cookie_works_once_without_a_token(service, client, backup):
    backup_id = backup["info"]["id"]
    cookie = client.post(f"/backups/cookie/{backup_id}").json()["cookie"]
    url = f"{service.url}/backups/cookie/{backup_id}"
    first = requests.get(url, params={"cookie": cookie}, timeout=60)
    assert first.status_code == 200, first.text[:300]
    assert first.headers["Content-Type"] == "application/octet-stream"
    assert vcda_sha512(first.content) == backup["info"]["hash"]
    second = requests.get(url, params={"cookie": cookie}, timeout=60)
    assert_error_response(second, 401, "InvalidDownloadCookie")


def test_cookie_for_another_backup_is_401(service, client, backup, chosen_id_backup):
    cookie = client.post(f"/backups/cookie/{backup['info']['id']}").json()["cookie"]
    response = requests.get(f"{service.url}/backups/cookie/{chosen_id_backup['id']}",
                            params={"cookie": cookie}, timeout=60)
    assert_error_response(response, 401, "InvalidDownloadCookie")


def test_made_up_cookie_is_401(service, backup):
    response = requests.get(f"{service.url}/backups/cookie/{backup['info']['id']}",
                            params={"cookie": "made-up-cookie"}, timeout=60)
    assert_error_response(response, 401, "InvalidDownloadCookie")


def test_cookie_for_unknown_backup_is_404(client):
    assert_error_response(client.post(f"/backups/cookie/{uuid.uuid4()}"), 404, "BackupNotFound")


# --- DELETE /backups/{backupId} --------------------------------------------------------------

@pytest.fixture(scope="module")
def deleted(service, client):
    _, made = backup_and_wait(client)
    backup_id = made["result"]["id"]
    response = client.delete(f"/backups/{backup_id}")
    assert response.status_code == 202, response.text
    return {"id": backup_id, "response": response,
            "task": client.wait_for_task(response.json()["id"])}


def test_delete_is_202_with_a_task_for_the_backup(service, deleted):
    response = deleted["response"]
    assert response.headers["Content-Type"] == VENDOR_JSON
    task = assert_api_task(response.json())
    assert task["result"] is None and task["workflowInfo"]["resourceId"] == deleted["id"]
    assert response.headers["Location"] == f"{service.url}/tasks/{task['id']}"


def test_delete_task_succeeds_without_result(deleted):
    task = assert_api_task(deleted["task"])
    assert task["state"] == "SUCCEEDED" and task["result"] is None


def test_deleted_backup_is_unlisted_and_not_downloadable(client, deleted):
    assert deleted["id"] not in listed_ids(client)
    assert_error_response(client.get(f"/backups/{deleted['id']}"), 404, "BackupNotFound")


def test_delete_frees_the_disk_space(service, deleted):
    assert not list(service.backup_dir.glob(f"{deleted['id']}*"))


def test_delete_of_unknown_backup_is_404(client):
    assert_error_response(client.delete(f"/backups/{uuid.uuid4()}"), 404, "BackupNotFound")


def test_delete_during_a_streamed_download_leaves_a_whole_file(service, client):
    _, made = backup_and_wait(client)
    info = made["result"]
    with client.get(f"/backups/{info['id']}", stream=True) as download:
        assert download.status_code == 200
        chunks = download.iter_content(64 * 1024)
        received = [next(chunks)]
        deleting = client.delete(f"/backups/{info['id']}")
        assert deleting.status_code == 202, deleting.text
        assert client.wait_for_task(deleting.json()["id"])["state"] == "SUCCEEDED"
        assert not list(service.backup_dir.glob(f"{info['id']}*"))
        received.extend(chunks)
    data = b"".join(received)
    assert len(data) == int(download.headers["Content-Length"]) > BIG_FILE_BYTES
    assert vcda_sha512(data) == info["hash"]
    assert info["id"] not in listed_ids(client)


# --- GET /tasks/{taskId} ---------------------------------------------------------------------

def test_unknown_task_is_404_task_not_found(client):
    assert_error_response(client.get(f"/tasks/{uuid.uuid4()}"), 404, "TaskNotFound")


def test_task_of_another_user_is_404_task_not_found(viewer, backup):
    assert_error_response(viewer.get(f"/tasks/{backup['task']['id']}"), 404, "TaskNotFound")


# --- GET /tasks ------------------------------------------------------------------------------

@pytest.fixture
def all_tasks(client, backup, chosen_id_backup, deleted):
    """Every task of this module's service at the time of the test, a delete among them."""
    everything = task_list(client, limit=100)
    assert everything["total"] == len(everything["items"]) >= 3
    return everything


def test_task_list_is_newest_first_by_default(all_tasks):
    starts = [t["startTime"] for t in all_tasks["items"]]
    assert starts == sorted(starts, reverse=True)


@pytest.mark.parametrize("sort, descending", [("startTime", False), ("+startTime", False),
                                              ("-startTime", True), ("endTime", False),
                                              ("-lastUpdated", True)])
def test_task_list_sorts(client, all_tasks, sort, descending):
    field = sort.lstrip("+-")
    values = [t[field] for t in task_list(client, sort=sort)["items"]]
    assert values == sorted(values, reverse=descending)


def test_task_list_pages_with_offset_and_limit(client, all_tasks):
    total = all_tasks["total"]
    walked = []
    for offset in range(0, total, 2):
        page = task_list(client, offset=offset, limit=2)
        assert page["total"] == total and len(page["items"]) <= 2
        walked.extend(t["id"] for t in page["items"])
    assert walked == [t["id"] for t in all_tasks["items"]]


def test_task_list_offset_past_the_end_is_empty(client, all_tasks):
    page = task_list(client, offset=all_tasks["total"] + 5)
    assert page == {"items": [], "total": all_tasks["total"]}


@pytest.mark.parametrize("query", [{"limit": 101}, {"limit": 0}, {"offset": -1},
                                   {"startTimeBefore": "yesterday"}, {"state": "QUEUED"}])
def test_task_list_refuses_bad_query_values(client, query):
    assert_error_response(client.get("/tasks", params=query), 400, "BadUserInput")


def test_task_list_filters_by_ids(client, backup, chosen_id_backup):
    wanted = {backup["task"]["id"], chosen_id_backup["task"]["id"]}
    found = task_list(client, ids=",".join(sorted(wanted)))
    assert {t["id"] for t in found["items"]} == wanted and found["total"] == 2


def test_task_list_filters_by_user(client, all_tasks):
    found = task_list(client, user="admin")
    assert found["total"] == all_tasks["total"]
    assert task_list(client, user=VIEWER) == {"items": [], "total": 0}


def test_task_list_filters_by_state(client, backup):
    found = task_list(client, state="SUCCEEDED")
    assert {t["state"] for t in found["items"]} == {"SUCCEEDED"}
    assert backup["task"]["id"] in {t["id"] for t in found["items"]}
    assert backup["task"]["id"] not in {t["id"] for t in task_list(client, state="FAILED")["items"]}


@pytest.mark.parametrize("field", ["startTime", "endTime"])
def test_task_list_filters_by_time_window(client, backup, field):
    moment = backup["task"][field]
    found = task_list(client, **{f"{field}After": moment - 1, f"{field}Before": moment + 1})
    assert backup["task"]["id"] in {t["id"] for t in found["items"]}
    assert all(moment - 1 < t[field] < moment + 1 for t in found["items"])
    for outside in ({f"{field}After": moment + 1}, {f"{field}Before": moment - 1}):
        assert backup["task"]["id"] not in {t["id"] for t in task_list(client, **outside)["items"]}


def test_task_list_filters_by_type(client, backup, deleted):
    found = task_list(client, type="backup")
    assert {t["workflowInfo"]["type"] for t in found["items"]} == {"backup"}
    assert backup["task"]["id"] in {t["id"] for t in found["items"]}
    assert deleted["task"]["id"] not in {t["id"] for t in found["items"]}


def test_task_list_filters_by_resource_id(client, deleted):
    found = task_list(client, resourceId=deleted["id"])
    assert {t["workflowInfo"]["resourceId"] for t in found["items"]} == {deleted["id"]}
    assert found["total"] == 2  # the backup that made it, and its deletion


def test_non_admin_listing_another_user_is_403(viewer):
    response = viewer.get("/tasks", params={"user": "admin"})
    body = assert_error_response(response, 403, "Forbidden")
    assert body["msg"] == "Permission denied."


def test_non_admin_lists_only_own_tasks(viewer, backup):
    assert task_list(viewer) == {"items": [], "total": 0}


# --- who may do what -------------------------------------------------------------------------

PROTECTED = [("GET", "/sessions"), ("DELETE", "/sessions"), ("POST", "/backups"),
             ("GET", "/backups"), ("POST", "/backups/{id}"), ("GET", "/backups/{id}"),
             ("DELETE", "/backups/{id}"), ("POST", "/backups/cookie/{id}"),
             ("GET", "/tasks"), ("GET", "/tasks/{id}"), ("GET", "/diagnostics/health"),
             ("POST", "/diagnostics/health"), ("GET", "/sites"), ("GET", "/sites/{id}")]


@pytest.mark.parametrize("method, path", PROTECTED)
def test_without_token_is_401_with_www_authenticate(client, method, path):
    kwargs = {"body": {}} if method == "POST" and "cookie" not in path else {}
    response = client.request(method, path.format(id=uuid.uuid4()), auth=False, **kwargs)
    assert_error_response(response, 401, "NotAuthenticated")
    assert response.headers["WWW-Authenticate"] == TOKEN_CHALLENGE


@pytest.mark.parametrize("method, path", [
    ("POST", "/backups"), ("POST", "/backups/{id}"), ("GET", "/backups"),
    ("GET", "/backups/{id}"), ("DELETE", "/backups/{id}"), ("POST", "/backups/cookie/{id}")])
def test_backup_endpoints_are_for_administrators_only(viewer, method, path):
    kwargs = {"body": {}} if method == "POST" and "cookie" not in path else {}
    response = viewer.request(method, path.format(id=uuid.uuid4()), **kwargs)
    body = assert_error_response(response, 403, "Forbidden")
    assert body["msg"] == "Permission denied."


# --- errors are ApiErrors, never HTML --------------------------------------------------------

def test_unknown_route_is_404_api_error(client):
    assert_error_response(client.get("/no/such/route"), 404, "NotFound")


def test_wrong_method_is_405_api_error(client):
    assert_error_response(client.request("PUT", "/sessions"), 405, "MethodNotAllowed")


def test_wrong_method_names_the_allowed_methods(client):
    response = client.request("PUT", "/sessions")
    assert response.status_code == 405
    allowed = {m.strip() for m in response.headers.get("Allow", "").split(",")}
    assert {"GET", "POST", "DELETE"} <= allowed, response.headers


def test_accept_of_an_h4_version_nobody_speaks_is_406(client):
    response = client.get("/sessions", headers={"Accept": "application/vnd.vmware.h4-v9.9+json"})
    assert_error_response(response, 406, "NotAcceptable")


@pytest.mark.parametrize("accept", [None, "*/*", "application/vnd.vmware.h4-v4.5+json",
                                    "application/vnd.vmware.h4-v9.9+json, "
                                    "application/vnd.vmware.h4-v4.5+json"])
def test_usual_accepts_get_the_45_type(client, accept):
    response = client.get("/sessions", headers={"Accept": accept})
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == VENDOR_JSON


def test_text_plain_body_is_415(client):
    response = client.post("/backups", data="password=x", headers={"Content-Type": "text/plain"})
    assert_error_response(response, 415, "UnsupportedMediaType")


def test_body_over_the_limit_is_413(client):
    response = client.post("/backups", {"password": "x" * (64 * 1024 + 1)})
    assert_error_response(response, 413, "PayloadTooLarge")


def test_chunked_body_over_the_limit_is_413(client):
    def chunks():
        yield b'{"password": "'
        for _ in range(70):
            yield b"x" * 1024
        yield b'"}'

    response = client.post("/backups", data=chunks(),
                           headers={"Content-Type": "application/json"})
    assert_error_response(response, 413, "PayloadTooLarge")


@pytest.mark.parametrize("body", [
    '{"password": ',                                  # not JSON
    '{"password": "x", "sources": ["/etc"]}',         # a field the contract does not have
    '{"password": 5}',                                # a number for a string
    '["password"]',                                   # not an object
])
def test_bad_backup_request_is_400(client, body):
    response = client.post("/backups", data=body, headers={"Content-Type": "application/json"})
    assert_error_response(response, 400, "BadUserInput")


@pytest.mark.parametrize("body", [
    {"type": "localUser", "localUser": 5, "localPassword": "x"},
    {"type": "vcdCookie", "localUser": "admin", "localPassword": "x"},
    {"type": "localUser", "localUser": "admin"},
])
def test_bad_login_request_is_400(client, body):
    assert_error_response(client.post("/sessions", body, auth=False), 400, "BadUserInput")


# --- versions: what each public client sends -------------------------------------------------

def vendor_type(version: str, charset: bool = True) -> str:
    return f"application/vnd.vmware.h4-v{version}+json" + (";charset=UTF-8" if charset else "")


def raw_login(service: Service, accept: str | None, content_type: str = "application/json",
              data: str | None = None) -> requests.Response:
    """A login as each client sends it; `accept` None sends no Accept header at all."""
    body = {"type": "localUser", "localUser": "admin", "localPassword": service.admin_password}
    return requests.post(f"{service.url}/sessions", data=data or json.dumps(body), timeout=30,
                         headers={"Accept": accept, "Content-Type": content_type})


def test_login_without_accept_gets_the_45_type(service):
    response = raw_login(service, None)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == VENDOR_JSON


@pytest.mark.parametrize("accept", ["application/json", "application/json;charset=UTF-8"])
def test_login_asking_for_plain_json_gets_plain_json(service, accept):
    response = raw_login(service, accept)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json;charset=UTF-8"


@pytest.mark.parametrize("charset", [False, True], ids=["bare", "charset"])
@pytest.mark.parametrize("version", VENDOR_VERSIONS)
def test_login_in_each_vendor_version_is_answered_in_it(service, version, charset):
    media_type = vendor_type(version, charset)
    response = raw_login(service, media_type, content_type=media_type)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == vendor_type(version)
    assert_session_details(response.json(), "admin")


def test_pretty_printed_login_body_is_read(service):
    body = {"type": "localUser", "localUser": "admin", "localPassword": service.admin_password}
    response = raw_login(service, vendor_type("4.5"), vendor_type("4.5"),
                         json.dumps(body, indent=4) + "\n")
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("version", ["9.9", "5"])
def test_unknown_version_is_406_the_same_with_or_without_charset(service, version):
    bodies = []
    for charset in (False, True):
        response = raw_login(service, vendor_type(version, charset))
        bodies.append(assert_error_response(response, 406, "NotAcceptable"))
    assert bodies[0] == bodies[1]
    assert all(f"{known}," in bodies[0]["msg"] for known in ("3.5", "4.3", "4.5"))


@pytest.mark.parametrize("charset", [False, True], ids=["bare", "charset"])
def test_body_in_an_unknown_version_is_415(service, charset):
    response = raw_login(service, None, content_type=vendor_type("9.9", charset))
    assert_error_response(response, 415, "UnsupportedMediaType")


@pytest.mark.parametrize("first_accept", [None, "application/json", vendor_type("4.7"),
                                          vendor_type("3", charset=False)])
def test_the_login_content_type_echoed_as_accept_works_later(service, first_accept):
    """The vendor module and Ansible send the login response's Content-Type as Accept."""
    logged_in = raw_login(service, first_accept)
    assert logged_in.status_code == 200, logged_in.text
    echoed = logged_in.headers["Content-Type"]
    response = requests.get(f"{service.url}/tasks", timeout=30, headers={
        "Accept": echoed, "X-VCAV-Auth": logged_in.headers["X-VCAV-Auth"]})
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == echoed


# --- GET /diagnostics/about ------------------------------------------------------------------

def test_about_answers_with_and_without_a_session(service, client):
    anonymous = requests.get(f"{service.url}/diagnostics/about", timeout=30)
    assert anonymous.status_code == 200, anonymous.text
    assert anonymous.headers["Content-Type"] == VENDOR_JSON
    with_session = client.get("/diagnostics/about")
    assert with_session.status_code == 200, with_session.text
    assert assert_about_info(anonymous.json()) == assert_about_info(with_session.json())


# --- GET and POST /diagnostics/health --------------------------------------------------------

@pytest.fixture(scope="module")
def ansible_health(service):
    """ansible_vcda_module's info: GET, 202 or it gives up, two seconds, one read of the task."""
    http = service.login()
    accepted = http.get(f"{service.url}/diagnostics/health", timeout=30)
    assert accepted.status_code == 202, accepted.text
    time.sleep(2)
    return {"accepted": accepted,
            "read": http.get(f"{service.url}/tasks/{accepted.json()['id']}", timeout=30)}


def test_health_task_read_once_after_two_seconds_has_ended(ansible_health):
    read = ansible_health["read"]
    assert read.status_code == 200 and read.headers["Content-Type"] == VENDOR_JSON
    task = assert_api_task(read.json())
    assert task["state"] == "SUCCEEDED" and task["resultType"] == "CloudHealthInfo", task
    result = assert_cloud_health_info(task["result"])
    assert {result[name] for name in HEALTH_ERRORS} == {None}, result


def test_health_task_describes_the_cloud_health_check(service, ansible_health):
    accepted = ansible_health["accepted"]
    task = assert_api_task(accepted.json())
    assert accepted.headers["Location"] == f"{service.url}/tasks/{task['id']}"
    assert task["workflowInfo"]["type"] == "health"
    assert task["workflowInfo"]["resourceType"] == "CLOUD"
    assert task["user"] == "admin"


def test_terraform_posts_health_and_polls_its_task(service):
    """terraform-provider-vcda 2.x: POST, then poll until the state is neither RUNNING nor
    QUEUED; code and msg of `error` when FAILED, else `result` as a map."""
    http = service.login()
    http.headers["Accept"] = vendor_type("4.7")
    accepted = http.post(f"{service.url}/diagnostics/health", timeout=30)
    assert accepted.status_code == 202, accepted.text
    assert accepted.headers["Content-Type"] == vendor_type("4.7")

    def ended():
        task = http.get(f"{service.url}/tasks/{accepted.json()['id']}", timeout=30).json()
        return task if task["state"] not in ("RUNNING", "QUEUED") else None

    task = assert_api_task(wait_until(ended, 30, "the health task"))
    assert task["state"] != "FAILED", (task["error"]["code"], task["error"]["msg"])
    assert isinstance(task["result"], dict)
    assert_cloud_health_info(task["result"])


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_health_in_each_client_style(client, method):
    response = client.request(method, "/diagnostics/health")
    assert response.status_code == 202, response.text
    assert response.headers["Content-Type"] == VENDOR_JSON
    task = assert_api_task(response.json())
    assert task["state"] == "SUCCEEDED" and task["endTime"] >= task["startTime"]
    assert client.get(f"/tasks/{task['id']}").json() == task


def test_health_reports_a_worker_answering(client):
    result = client.get("/diagnostics/health").json()["result"]
    assert result["managerError"] is None and result["dbError"] is None, result


# --- GET /sites ------------------------------------------------------------------------------

def test_sites_is_a_plain_list_of_the_local_site(service, client):
    response = client.get("/sites")
    assert response.status_code == 200 and response.headers["Content-Type"] == VENDOR_JSON
    body = response.json()
    assert isinstance(body, list) and len(body) == 1, body
    site = assert_site(body[0])
    assert site["site"] == SITE and site["apiUrl"] == service.url


def test_one_site_by_name(client):
    response = client.get(f"/sites/{SITE}")
    assert response.status_code == 200, response.text
    assert response.json() == client.get("/sites").json()[0]


def test_another_site_is_404(client):
    assert_error_response(client.get("/sites/elsewhere"), 404, "SiteNotFound")


# --- GET /tasks as the community modules filter it -------------------------------------------

@pytest.fixture(scope="module")
def health_task(client, style):
    """A health task asked for with an operationID."""
    operation_id = f"op-health-{style}-{uuid.uuid4().hex[:8]}"
    response = client.post("/diagnostics/health", headers={"operationID": operation_id})
    assert response.status_code == 202, response.text
    return {"task": response.json(), "operationID": operation_id}


def _ids(found: dict) -> list[str]:
    return [t["id"] for t in found["items"]]


def test_task_list_filters_by_site(client, backup, health_task):
    everything = _ids(task_list(client, limit=100))
    assert health_task["task"]["id"] in everything and backup["task"]["id"] in everything
    assert _ids(task_list(client, site=SITE, limit=100)) == everything
    assert task_list(client, site="elsewhere") == {"items": [], "total": 0}


def test_task_list_filters_by_operation_id_query(client, health_task):
    found = task_list(client, operationID=health_task["operationID"])
    assert _ids(found) == [health_task["task"]["id"]]


def test_task_list_filters_by_state_start_time_and_user_together(client, backup, health_task):
    task = health_task["task"]
    found = task_list(client, state="SUCCEEDED", startTimeAfter=task["startTime"] - 1,
                      user="admin", site=SITE)
    assert task["id"] in _ids(found)
    assert backup["task"]["id"] not in _ids(found)  # it started earlier
    assert all(t["state"] == "SUCCEEDED" and t["startTime"] >= task["startTime"]
               and t["user"] == "admin" for t in found["items"])
    assert task["id"] not in _ids(task_list(client, user=VIEWER))
    assert task["id"] not in _ids(task_list(client, state="FAILED"))


# --- the quota, under concurrent requests ----------------------------------------------------

@pytest.fixture(scope="module")
def quota_service(tmp_path_factory):
    """A service of its own with a quota of five and a small source, so it fills quickly."""
    redis_server = RedisServer(tmp_path_factory.mktemp("quota-redis")).start()
    tree = tmp_path_factory.mktemp("quota-source") / "tree"
    tree.mkdir()
    (tree / "settings.conf").write_text("quota = 5\n")
    running = Service(tmp_path_factory.mktemp("quota-service"), redis_server, {"tree": tree},
                      extra_env={"H4_BACKUP_QUOTA": str(QUOTA),
                                 "H4_SCRYPT_WORK_FACTOR": "10",
                                 # The concurrent clients all come from 127.0.0.1.
                                 "H4_CONNECTIONS_PER_ADDRESS": str(2 * CONCURRENT_REQUESTS)})
    try:
        yield running.start(workers=1)
    finally:
        stop_in_background(running, redis_server)


def test_quota_holds_under_concurrent_requests(quota_service):
    client = connect(quota_service, "terraform")
    barrier = threading.Barrier(CONCURRENT_REQUESTS, timeout=30)
    responses: list[requests.Response] = []

    def ask():
        own = CLIENT_STYLES["terraform"](quota_service.url)
        own.token = client.token
        barrier.wait()
        responses.append(own.post("/backups", {}))

    threads = [threading.Thread(target=ask) for _ in range(CONCURRENT_REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(responses) == CONCURRENT_REQUESTS
    accepted = [r for r in responses if r.status_code == 202]
    refused = [r for r in responses if r.status_code != 202]
    assert len(accepted) == QUOTA, [r.status_code for r in responses]
    for response in refused:
        body = assert_error_response(response, 409, "BackupQuotaExceeded")
        assert body["msg"] == ("Backup quota exceeded. Number of allowed backups: 5, "
                               "current backup count: 5")
    for response in accepted:
        assert client.wait_for_task(response.json()["id"])["state"] == "SUCCEEDED"
    assert len(listed_ids(client)) == QUOTA
