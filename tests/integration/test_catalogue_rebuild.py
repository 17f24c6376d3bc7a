"""Redis loses everything (FLUSHALL), the services restart: the catalogue comes back from the
storage, with each backup's record, on the folder and on the object store alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.harness import RedisServer, Service, stop_in_background, wait_until
from tests.integration.trees import assert_same_tree, make_tree

pytestmark = pytest.mark.integration

PASSWORD = "rebuild-Pa$$-42"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("rebuild-source") / "tree", files=40)


def _backup(service, http, labels: dict[str, str] | None = None) -> dict:
    response = http.post(f"{service.url}/backups",
                         json={"password": PASSWORD, **({"labels": labels} if labels else {})})
    assert response.status_code == 202, response.text
    task = service.wait_for_task(http, response.json()["id"])
    assert task["state"] == "SUCCEEDED", task
    return task["result"]


def _listing(service, http) -> dict[str, dict]:
    return {b["id"]: b for b in http.get(f"{service.url}/backups").json()}


def _start_again(service: Service) -> None:
    """The same service started afresh, its earlier processes and logs put aside."""
    service.workers.clear()
    service.log_dir.rename(service.log_dir.with_name("logs-before-restart"))
    service.start(workers=1, beat=True)


def test_after_flushall_and_a_restart_the_same_backups_are_listed_and_usable(
        tmp_path, tree, storage_env):
    redis_server = RedisServer(tmp_path / "redis").start()
    env = {"H4_SCRYPT_WORK_FACTOR": "12", "H4_RESTORE_DIR": str(tmp_path / "restores"),
           **storage_env}
    service = Service(tmp_path / "svc", redis_server, {"tree": tree}, extra_env=env)
    service.start(workers=1, beat=True)
    try:
        http = service.login()
        made = [_backup(service, http, {"set": "rebuild", "n": str(n)}) for n in range(3)]
        before = _listing(service, http)
        assert set(before) == {b["id"] for b in made}
        assert before[made[1]["id"]]["labels"] == made[1]["labels"] == {"set": "rebuild",
                                                                        "n": "1"}

        service.stop()
        redis_server.client().flushall()
        _start_again(service)

        http = service.login()  # the administrator is back from its settings
        wait_until(lambda: _listing(service, http) == before, 30,
                   "the catalogue to be rebuilt with the same backups, hashes and labels")
        found = http.get(f"{service.url}/backups", params={"label": ["set=rebuild", "n=2"]})
        assert [b["id"] for b in found.json()] == [made[2]["id"]]
        first = made[0]["id"]
        download = http.get(f"{service.url}/backups/{first}")
        assert download.status_code == 200
        assert download.headers["X-Content-SHA512"] == before[first]["hash"]
        restored = http.post(f"{service.url}/backups/{first}/restore",
                             json={"password": PASSWORD})
        task = service.wait_for_task(http, restored.json()["id"])
        assert task["state"] == "SUCCEEDED", task
        assert_same_tree(tree, Path(task["result"]["path"]) / "tree")
        # Retention and the quota count the backups found again.
        assert redis_server.client().zcard("h4:backups") == 3
    finally:
        stop_in_background(service, redis_server)


# The command is the same on both backends; the first test covers the folder.
@pytest.mark.parametrize("backend", ["s3"], scope="module")
def test_the_rebuild_command_lists_again_what_redis_lost(tmp_path, tree, storage_env):
    """Without beat no reaper runs: the command alone brings the backups back."""
    redis_server = RedisServer(tmp_path / "redis").start()
    env = {"H4_SCRYPT_WORK_FACTOR": "12", **storage_env}
    service = Service(tmp_path / "svc", redis_server, {"tree": tree}, extra_env=env)
    service.start(workers=1)
    try:
        http = service.login()
        made = _backup(service, http)
        redis_server.client().flushall()
        done = service.command("catalogue", "rebuild", "--json")
        assert done.returncode == 0, done.stderr
        # The bucket is the module's: the first test's backups come back with this one.
        relisted = json.loads(done.stdout.splitlines()[-1])["relisted"]
        assert made["id"] in relisted
        http = service.login()
        assert set(_listing(service, http)) == set(relisted)
    finally:
        stop_in_background(service, redis_server)
