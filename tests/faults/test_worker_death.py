"""Workers die in the middle of a backup: the task is never lost and never half-stored."""

from __future__ import annotations

import hashlib
import os
import signal

import pytest

from common.backupfile.format.age import header_opens
from tests.integration.harness import lease_holder_pid, parent_pid, wait_until

pytestmark = pytest.mark.faults

PASSWORD = "fault-suite-Pa$$-7"
NEW_PASSWORD = "fault-suite-rekeyed-Pa$$-8"


def _start_backup(service):
    http = service.login()
    response = http.post(f"{service.url}/backups", json={"password": PASSWORD})
    assert response.status_code == 202, response.text
    return http, response.json()["id"]


def _running_holder(service, http, task_id, at_least: int = 10) -> int:
    """Wait until the backup is under way, then name the process running it."""
    client = service.redis.client()

    def under_way():
        task = http.get(f"{service.url}/tasks/{task_id}").json()
        assert task["state"] == "RUNNING", task
        return task["progress"] >= at_least and lease_holder_pid(client, task_id)

    return wait_until(under_way, 120, "the backup to get under way")


def _kill_worker_running(pid: int, sig: int) -> int:
    """Signal the Celery worker whose pool process `pid` runs the task; returns its pid."""
    main = parent_pid(pid)
    os.kill(main, sig)
    if sig == signal.SIGKILL:
        os.kill(pid, sig)
    return main


def _vcda_sha512(path) -> str:
    digest = hashlib.sha512()
    with open(path, "rb") as stored:
        for block in iter(lambda: stored.read(1 << 20), b""):
            digest.update(block)
    return "SHA-512:" + ":".join(f"{b:02X}" for b in digest.digest())


def _files_of(service, backup_id):
    """The backup's file and record, and anything else its attempts left."""
    return sorted(p.name for p in service.backup_dir.iterdir() if backup_id in p.name)


def test_sigkill_mid_backup_is_finished_by_another_worker(make_service, big_tree):
    service = make_service({"big": big_tree}, workers=2)
    http, task_id = _start_backup(service)
    killed = _kill_worker_running(_running_holder(service, http, task_id), signal.SIGKILL)
    task = service.wait_for_task(http, task_id, seconds=240)
    assert task["state"] == "SUCCEEDED", task
    backup_id = task["result"]["id"]
    assert _files_of(service, backup_id) == [f"{backup_id}.backup.json",
                                             f"{backup_id}.tar.zst.age"]
    assert _vcda_sha512(service.backup_dir / f"{backup_id}.tar.zst.age") == task["result"]["hash"]
    survivor = [w for w in service.workers if w.pid != killed]
    assert survivor and survivor[0].poll() is None
    attempts = service.redis.client().hget(f"h4:task:{task_id}", "attempts")
    assert int(attempts) >= 2


def test_sigkill_with_attempts_used_up_ends_worker_lost(make_service, big_tree):
    service = make_service({"big": big_tree}, workers=2, H4_MAX_ATTEMPTS="1")
    http, task_id = _start_backup(service)
    _kill_worker_running(_running_holder(service, http, task_id), signal.SIGKILL)
    task = service.wait_for_task(http, task_id, seconds=120)
    assert (task["state"], task["error"]["code"]) == ("FAILED", "WorkerLost")
    wait_until(lambda: not list(service.backup_dir.glob(".*.part")), 30,
               "the partial file to be removed")
    assert http.get(f"{service.url}/backups").json() == []


def test_sigterm_mid_backup_finishes_or_hands_over(make_service, big_tree):
    service = make_service({"big": big_tree}, workers=2)
    http, task_id = _start_backup(service)
    stopped = _kill_worker_running(_running_holder(service, http, task_id), signal.SIGTERM)
    task = service.wait_for_task(http, task_id, seconds=240)
    assert task["state"] == "SUCCEEDED", task
    backup_id = task["result"]["id"]
    assert _files_of(service, backup_id) == [f"{backup_id}.backup.json",
                                             f"{backup_id}.tar.zst.age"]
    worker = next(w for w in service.workers if w.pid == stopped)
    assert worker.wait(90) == 0  # a warm shutdown, within the soft shutdown window


def test_sigkill_mid_rekey_is_finished_by_another_worker_and_the_listing_matches_the_file(
        make_service, big_tree):
    service = make_service({"big": big_tree}, workers=2)
    http, task_id = _start_backup(service)
    backup = service.wait_for_task(http, task_id, seconds=240)["result"]
    response = http.post(f"{service.url}/backups/{backup['id']}/rekey",
                         json={"password": PASSWORD, "newPassword": NEW_PASSWORD})
    assert response.status_code == 202, response.text
    rekey_id = response.json()["id"]
    _kill_worker_running(_running_holder(service, http, rekey_id, at_least=1), signal.SIGKILL)
    task = service.wait_for_task(http, rekey_id, seconds=120)
    assert task["state"] == "SUCCEEDED", task
    path = service.backup_dir / f"{backup['id']}.tar.zst.age"
    listed = {b["id"]: b for b in http.get(f"{service.url}/backups").json()}[backup["id"]]
    assert _vcda_sha512(path) == listed["hash"] == task["result"]["hash"] != backup["hash"]
    with open(path, "rb") as stored:
        head = stored.read(64 << 10)
    assert header_opens(head, NEW_PASSWORD) and not header_opens(head, PASSWORD)
    # No journal, no temporary: only the file and its record.
    assert _files_of(service, backup["id"]) == [f"{backup['id']}.backup.json",
                                                f"{backup['id']}.tar.zst.age"]
    assert service.backup_dir.joinpath(f"{backup['id']}.backup.json").read_text().count(
        listed["hash"]) == 1
