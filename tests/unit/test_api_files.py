"""Downloads, cookies and deletion, on a backup listed directly in the (fake) store."""

import hashlib
import uuid

import pytest

from common.tasks import new_backup_task
from tests.conftest import login

CONTENT = bytes(range(256)) * 1000


def fetch(client, url, headers=None):
    """GET and close: a file response holds the file open until it is closed."""
    with client.get(url, headers=headers) as response:
        response.get_data()
        return response


@pytest.fixture
def backup(settings, store):
    backup_id = str(uuid.uuid4())
    settings.backup_dir.mkdir(parents=True, exist_ok=True)
    name = f"{backup_id}.tar.zst.age"
    (settings.backup_dir / name).write_bytes(CONTENT)
    row = new_backup_task("admin", backup_id, encrypted=True)
    store.create_backup_task(row, backup_id, 10, None, 60)
    digest = hashlib.sha512(CONTENT).digest()
    info = {"id": backup_id, "generatedOn": 1_700_000_000_000,
            "hash": "SHA-512:" + ":".join(f"{b:02X}" for b in digest)}
    store.succeed(row.id, info, "BackupInfo", backup={**info, "file": name,
                                                         "size": len(CONTENT)})
    return info


def test_download_whole_file_with_headers(client, backup):
    response = fetch(client, f"/backups/{backup['id']}", login(client))
    assert response.status_code == 200 and response.data == CONTENT
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Content-Length"] == str(len(CONTENT))
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert backup["id"] in response.headers["Content-Disposition"]
    assert response.headers["ETag"].strip('"') == hashlib.sha512(CONTENT).hexdigest()
    assert response.headers["Accept-Ranges"] == "bytes"


def test_range_download_is_206(client, backup):
    headers = {**login(client), "Range": "bytes=1000-"}
    response = fetch(client, f"/backups/{backup['id']}", headers)
    assert response.status_code == 206 and response.data == CONTENT[1000:]
    assert response.headers["Content-Range"] == f"bytes 1000-{len(CONTENT) - 1}/{len(CONTENT)}"


def test_range_past_the_end_is_416_api_error(client, backup):
    headers = {**login(client), "Range": f"bytes={len(CONTENT) + 10}-"}
    response = fetch(client, f"/backups/{backup['id']}", headers)
    assert response.status_code == 416
    assert response.get_json(force=True)["code"] == "RangeNotSatisfiable"


def test_unknown_backup_is_404(client):
    response = client.get(f"/backups/{uuid.uuid4()}", headers=login(client))
    assert (response.status_code, response.get_json(force=True)["code"]) == (
        404, "BackupNotFound")


def test_non_uuid_backup_id_is_404(client):
    response = client.get("/backups/..%2F..%2Fetc%2Fpasswd", headers=login(client))
    assert response.status_code == 404


def test_cookie_download_works_once_without_token(client, backup):
    cookie = client.post(f"/backups/cookie/{backup['id']}", headers=login(client))
    assert cookie.status_code == 202
    url = f"/backups/cookie/{backup['id']}?cookie={cookie.get_json()['cookie']}"
    assert fetch(client, url).data == CONTENT
    again = client.get(url)
    assert (again.status_code, again.get_json(force=True)["code"]) == (
        401, "InvalidDownloadCookie")


def test_cookie_is_bound_to_its_backup(client, backup):
    cookie = client.post(f"/backups/cookie/{backup['id']}", headers=login(client)).get_json()
    response = client.get(f"/backups/cookie/{uuid.uuid4()}?cookie={cookie['cookie']}")
    assert response.status_code == 401


def test_delete_unlists_removes_file_and_returns_task(client, backup, settings, store):
    headers = login(client)
    response = client.delete(f"/backups/{backup['id']}", headers=headers)
    assert response.status_code == 202
    task = response.get_json()
    assert (task["state"], task["result"], task["workflowInfo"]["resourceId"]) == (
        "SUCCEEDED", None, backup["id"])
    assert client.get("/backups", headers=headers).get_json() == []
    assert list(settings.backup_dir.iterdir()) == []
    assert client.delete(f"/backups/{backup['id']}", headers=headers).status_code == 404


def _make_tasks(client, headers, count):
    return [client.post("/backups", json={}, headers={**headers, "operationID": f"op{n}"})
            .get_json() for n in range(count)]


def test_task_list_pages_and_totals(client):
    headers = login(client)
    made = _make_tasks(client, headers, 3)
    page = client.get("/tasks?limit=2&offset=1&sort=startTime", headers=headers).get_json()
    assert page["total"] == 3 and len(page["items"]) == 2
    assert page["items"][0]["id"] in {t["id"] for t in made}


def test_task_list_filters(client):
    headers = login(client)
    made = _make_tasks(client, headers, 3)
    by_op = client.get("/tasks?operationID=op1", headers=headers).get_json()
    assert [t["id"] for t in by_op["items"]] == [made[1]["id"]]
    by_ids = client.get(f"/tasks?ids={made[0]['id']},{made[2]['id']}", headers=headers)
    assert by_ids.get_json()["total"] == 2
    assert client.get("/tasks?state=FAILED", headers=headers).get_json()["total"] == 0
    assert client.get("/tasks?type=backup&endTimeBefore=99999999999999",
                      headers=headers).get_json()["total"] == 0


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "offset=-1", "state=DONE",
                                   "sort=password", "startTimeAfter=soon"])
def test_task_list_bad_query_is_400(client, query):
    response = client.get(f"/tasks?{query}", headers=login(client))
    assert (response.status_code, response.get_json(force=True)["code"]) == (400, "BadUserInput")
