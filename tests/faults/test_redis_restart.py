"""Redis restarts (AOF) while tasks are queued and running: every one still ends SUCCEEDED."""

from __future__ import annotations

import collections
import json

import pytest

from tests.faults.conftest import write_random_tree
from tests.integration.harness import wait_until

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
    assert sorted(p.name.split(".")[0] for p in service.backup_dir.iterdir()) == sorted(backup_ids)
    assert set(_stored_lines(service).values()) == {1}
