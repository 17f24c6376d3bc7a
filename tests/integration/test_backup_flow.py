"""End to end: log in, generate a backup, watch it, and open the file with standard tools."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import threading

import pyrage
import pytest
import zstandard

from common.store import Store
from tests.integration.harness import redis_contents
from tests.integration.trees import assert_same_tree
from tests.tools import age_decrypts, require_tool

pytestmark = pytest.mark.integration

BACKUP_PASSWORD = "Corr3ct-Horse-Battery-Staple!x9"


@pytest.fixture(scope="module")
def finished_backup(service):
    """One encrypted backup, its progress seen on every poll, Redis searched while it ran."""
    http = service.login()
    response = http.post(f"{service.url}/backups", json={"password": BACKUP_PASSWORD},
                         headers={"operationID": "op-e2e-1"})
    assert response.status_code == 202, response.text
    seen, found_in_redis = [], []
    client = service.redis.client()

    def on_poll(task):
        seen.append(task["progress"])
        if len(seen) % 5 == 1:
            found_in_redis.extend(b for b in redis_contents(client)
                                  if BACKUP_PASSWORD.encode() in b)

    task = service.wait_for_task(http, response.json()["id"], on_poll=on_poll)
    return {"accepted": response, "task": task, "progress": seen,
            "found_in_redis": found_in_redis}


def _stored_name(service, task) -> str:
    """The one backup file stored for the task's backup (its record aside)."""
    (name,) = [n for n in service.stored_names() if n.startswith(f"{task['result']['id']}.")]
    return name


def test_backup_succeeds_with_backup_info(finished_backup):
    task = finished_backup["task"]
    assert task["state"] == "SUCCEEDED", task
    assert task["progress"] == 100 and task["error"] is None and task["endTime"] > 0
    assert task["resultType"] == "BackupInfo"
    assert set(task["result"]) == {"id", "generatedOn", "hash"}
    assert task["workflowInfo"]["resourceId"] == task["result"]["id"]


def test_accepted_response_is_vcda_shaped(finished_backup, service):
    response = finished_backup["accepted"]
    assert response.headers["Content-Type"] == "application/vnd.vmware.h4-v4.5+json;charset=UTF-8"
    assert response.headers["Location"] == f"{service.url}/tasks/{response.json()['id']}"
    assert response.headers["operationID"] == "op-e2e-1"


def test_progress_never_goes_down(finished_backup):
    progress = finished_backup["progress"]
    assert progress == sorted(progress) and progress[-1] == 100
    assert all(p < 100 for p in progress[:-1] if p != 100)


def test_stored_file_matches_hash_by_sha512sum(finished_backup, service, tmp_path):
    path = service.stored_file(_stored_name(service, finished_backup["task"]), tmp_path)
    digest = subprocess.run([require_tool("sha512sum"), str(path)], check=True,
                            capture_output=True, text=True).stdout.split()[0]
    expected = finished_backup["task"]["result"]["hash"]
    assert expected == "SHA-512:" + ":".join(digest[i:i + 2] for i in range(0, 128, 2)).upper()
    assert service.unfinished_writes() == []


def test_backup_is_listed(finished_backup, service):
    listed = service.login().get(f"{service.url}/backups").json()
    assert finished_backup["task"]["result"] in listed


def test_pyrage_decrypts_to_the_source_tree(finished_backup, service, source_tree, tmp_path):
    sealed = service.stored_bytes(_stored_name(service, finished_backup["task"]))
    archive = zstandard.ZstdDecompressor().stream_reader(
        io.BytesIO(pyrage.passphrase.decrypt(sealed, BACKUP_PASSWORD)))
    with tarfile.open(fileobj=archive, mode="r|") as tar:
        tar.extractall(tmp_path, filter="tar")
    assert assert_same_tree(source_tree, tmp_path / "tree") > 300
    assert (tmp_path / "h4backup-manifest.jsonl").exists()


def test_age_cli_decrypts_to_the_source_tree(finished_backup, service, source_tree, tmp_path):
    path = service.stored_file(_stored_name(service, finished_backup["task"]), tmp_path)
    plain = tmp_path / "archive.tar.zst"
    age_decrypt_with_cli(path, plain, BACKUP_PASSWORD)
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(f"{require_tool('zstd')} -dc {plain} | tar -x -C {out}", shell=True,
                   check=True)
    assert assert_same_tree(source_tree, out / "tree") > 300


def age_decrypt_with_cli(path, output, passphrase: str) -> None:
    run = age_decrypts(path, passphrase, output)
    assert run.returncode == 0, run.stdout + run.stderr


def test_password_is_nowhere_in_redis(finished_backup, service):
    assert finished_backup["found_in_redis"] == []
    everything = redis_contents(service.redis.client())
    assert [b for b in everything if BACKUP_PASSWORD.encode() in b] == []


def test_password_is_nowhere_in_logs_or_task(finished_backup, service):
    assert BACKUP_PASSWORD not in service.logs()
    assert BACKUP_PASSWORD not in str(finished_backup["task"])
    assert "op-e2e-1" in service.logs()  # the worker's lines carry the operationID


def test_late_progress_write_cannot_reopen_finished_task(finished_backup, service):
    task_id = finished_backup["task"]["id"]
    store = Store.from_url(service.redis.url)
    assert not store.record_progress(task_id, 10)
    assert not store.fail(task_id, {"code": "Late"})
    assert store.get_task(task_id).state == "SUCCEEDED"


def test_unencrypted_backup_is_plain_tar_zst(service, source_tree, tmp_path):
    http = service.login()
    task = service.wait_for_task(http, http.post(f"{service.url}/backups", json={}).json()["id"])
    assert task["state"] == "SUCCEEDED", task
    name = _stored_name(service, task)
    assert name.endswith(".tar.zst")
    path = service.stored_file(name, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(f"zstd -dc {path} | tar -x -C {out}", shell=True, check=True)
    assert_same_tree(source_tree, out / "tree")


def test_concurrent_backups_on_two_workers_all_succeed(service):
    http = service.login()
    ids = [http.post(f"{service.url}/backups", json={"password": f"p{n}-{BACKUP_PASSWORD}"})
           .json()["id"] for n in range(3)]
    results: dict[str, dict] = {}
    threads = [threading.Thread(target=lambda i=i: results.update(
        {i: service.wait_for_task(service.login(), i)})) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(t["state"] for t in results.values()) == ["SUCCEEDED"] * 3


def test_refusals_over_real_http(service):
    import requests

    assert requests.post(f"{service.url}/backups", json={}).status_code == 401
    http = service.login()
    bad = http.post(f"{service.url}/backups", data="{not json",
                    headers={"Content-Type": "application/json"})
    assert (bad.status_code, bad.json()["code"]) == (400, "BadUserInput")
    env_user = service.env()
    env_user["H4_NEW_USER_PASSWORD"] = "viewer-pass-1"
    subprocess.run([sys.executable, "-m", "cli.main", "user", "add", "viewer"], env=env_user,
                   check=True, capture_output=True)
    viewer = service.login("viewer", "viewer-pass-1")
    refused = viewer.post(f"{service.url}/backups", json={})
    assert (refused.status_code, refused.json()["msg"]) == (403, "Permission denied.")
