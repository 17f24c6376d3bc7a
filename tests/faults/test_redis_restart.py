"""Redis restarts (AOF) while tasks are queued and running: every one still ends SUCCEEDED."""

from __future__ import annotations

import collections
import json
import random
import time

import pytest
import requests

from common.backupfile.format.age import generate_x25519_identity
from common.backupfile.io.folder import is_temporary_name
from tests.faults.conftest import FAST_FAULTS, write_random_tree
from tests.integration.harness import wait_until
from tests.integration.trees import make_tree

pytestmark = pytest.mark.faults


def _leases(client) -> int:
    return sum(1 for _ in client.scan_iter("h4:task:*:lease"))


def _stored_lines(service) -> collections.Counter:
    """How many times each backup id was stored, read from the workers' JSON log lines."""
    stored: collections.Counter = collections.Counter()
    for line in service.logs().splitlines():
        if '"msg": "backup ' in line and " stored: " in line:
            stored[json.loads(line)["msg"].split()[1]] += 1
    return stored


def test_redis_restart_with_queued_and_running_tasks_loses_nothing(make_service, tmp_path):
    source = write_random_tree(tmp_path / "medium", 48 * 1024 * 1024, 8 * 1024 * 1024)
    service = make_service({"medium": source}, workers=2, appendonly=True,
                           H4_BACKUP_QUOTA="100", H4_USER_TASK_CAP="100")
    http = service.login()
    task_ids = [http.post(f"{service.url}/backups", json={}).json()["id"] for _ in range(22)]
    client = service.redis.client()
    wait_until(lambda: _leases(client) == 2, 60, "two backups to be running")
    service.redis.restart()
    http = service.login()  # sessions survived too, but log in as a client would on a 401
    finished = [service.wait_for_task(http, task_id, seconds=300) for task_id in task_ids]
    assert [t["state"] for t in finished] == ["SUCCEEDED"] * 22, [
        (t["state"], t["error"]) for t in finished if t["state"] != "SUCCEEDED"]
    backup_ids = {t["result"]["id"] for t in finished}
    listed = {b["id"] for b in http.get(f"{service.url}/backups").json()}
    assert len(backup_ids) == 22 and listed == backup_ids
    assert sorted(n.split(".")[0] for n in service.stored_names()) == sorted(backup_ids)
    assert set(_stored_lines(service).values()) == {1}


# --- Redis restarted at random points of backups ------------------------------------------

RESTARTS = 12
# Seeded, so that a failing run replays restart for restart.
RESTART_SEED = 1103
# Encrypted to a public key: the encryption stage runs, and a task sent again still has all
# it needs (a passphrase sealed for the task would not survive every restart).
_, RECIPIENT = generate_x25519_identity()


def _poll(service, http, task_id: str) -> dict | None:
    """The task, or None while Redis is away (the API answers 503 meanwhile)."""
    try:
        response = http.get(f"{service.url}/tasks/{task_id}", timeout=5)
    except requests.RequestException:
        return None
    return response.json() if response.status_code == 200 else None


def _start(service, http) -> str:
    def accepted():
        response = http.post(f"{service.url}/backups", json={"recipients": [RECIPIENT]},
                             timeout=5)
        return response.json()["id"] if response.status_code == 202 else None

    return wait_until(accepted, 30, "a backup to be accepted")


def _wait_for_lease(service, task_id: str) -> None:
    client = service.redis.client()
    wait_until(lambda: client.exists(f"h4:task:{task_id}:lease"), 30, "the backup to start")


def _end_of(service, http, task_id: str, seconds: float) -> dict:
    def ended():
        task = _poll(service, http, task_id)
        return task if task and task["state"] != "RUNNING" else None

    return wait_until(ended, seconds, f"task {task_id} to end", interval=0.1)


def _delete(service, http, backup_id: str) -> None:
    def deleted():
        response = http.delete(f"{service.url}/backups/{backup_id}", timeout=5)
        return response.status_code == 202

    wait_until(deleted, 30, f"backup {backup_id} to be deleted")


def _temporaries(service) -> list[str]:
    return [p.name for p in service.backup_dir.iterdir() if is_temporary_name(p.name)]


def _restart(service, rng: random.Random) -> float:
    """Restart Redis at a random point of the running backup, away for a random while;
    returns when it went away (time.monotonic)."""
    time.sleep(rng.uniform(0.0, 0.8))
    service.redis.stop()
    stopped = time.monotonic()
    time.sleep(rng.choice([0.0, 0.0, 0.5, 1.5]))
    service.redis.start()
    return stopped


def _attempts(service, task_id: str) -> int:
    return int(service.redis.client().hget(f"h4:task:{task_id}", "attempts") or 0)


def test_redis_restarts_at_random_points_never_leave_a_task_running(make_service, tmp_path):
    # zstd level 15 turns 32 MiB of random data into about a second of backup, the window the
    # restarts aim at; the small tree adds many files and checkpoints.
    tree = write_random_tree(tmp_path / "medium", 32 * 1024 * 1024, 4 * 1024 * 1024)
    service = make_service({"medium": tree, "small": make_tree(tmp_path / "small", files=60)},
                           workers=1, appendonly=True, H4_BACKUP_QUOTA="100",
                           H4_USER_TASK_CAP="100", H4_ZSTD_LEVEL="15")
    rng = random.Random(RESTART_SEED)
    http = service.login()
    lease = int(FAST_FAULTS["H4_LEASE_SECONDS"])
    rerun = 0
    for _ in range(RESTARTS):
        task_id = _start(service, http)
        _wait_for_lease(service, task_id)
        stopped = _restart(service, rng)
        task = _end_of(service, http, task_id, stopped + lease + 30 - time.monotonic())
        assert task["state"] in ("SUCCEEDED", "FAILED"), task
        if task["state"] == "SUCCEEDED":  # keeps the disk from filling up
            _delete(service, http, task["result"]["id"])
        wait_until(lambda: not _temporaries(service), 10, "partial files to be removed")
        rerun += _attempts(service, task_id) > 1
    # Most restarts must have caught a backup running, or this proves little.
    assert rerun >= RESTARTS // 2, f"only {rerun} of {RESTARTS} backups were interrupted"
    # The worker goes on consuming: a backup started after the last restart succeeds.
    task = _end_of(service, http, _start(service, http), lease + 30)
    assert task["state"] == "SUCCEEDED", task
    listed = {b["id"] for b in http.get(f"{service.url}/backups").json()}
    assert {n.split(".")[0] for n in service.stored_names()} == listed
