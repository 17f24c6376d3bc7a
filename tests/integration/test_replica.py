"""The second copy (3-2-1) on real workers: each backup is copied to a replica folder and
checked there; when the primary loses its copy, on disk or in the object store, or holds a
damaged one, download and restore still give the backup whole."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from common.backupfile.io.hashing import format_sha512
from tests.integration.harness import Service, stop_in_background, wait_until
from tests.integration.trees import assert_same_tree

pytestmark = pytest.mark.integration

PASSWORD = "replica-Pa$$-7"


@pytest.fixture(scope="module")
def svc(tmp_path_factory, redis_server, source_tree, storage_env):
    root = tmp_path_factory.mktemp("replica-service")
    service = Service(root / "service", redis_server, {"tree": source_tree},
                      extra_env={"H4_SCRYPT_WORK_FACTOR": "12",
                                 "H4_RESTORE_DIR": str(root / "restores"),
                                 "H4_REPLICA": "folder", "H4_REPLICA_DIR": str(root / "replica"),
                                 **storage_env})
    service.start(workers=2)
    service.replica_dir = root / "replica"
    yield service
    stop_in_background(service)


def _sha512(data: bytes) -> str:
    return format_sha512(hashlib.sha512(data).digest())


def _run(service, http, method: str, path: str, **body) -> dict:
    response = http.request(method, f"{service.url}{path}", json=body)
    assert response.status_code == 202, response.text
    return service.wait_for_task(http, response.json()["id"], seconds=120)


def _listed(service, http, backup_id: str) -> dict:
    return {b["id"]: b for b in http.get(f"{service.url}/backups").json()}[backup_id]


def _copied_backup(service, http) -> dict:
    """A new encrypted backup, once its copy task has put it on the replica."""
    task = _run(service, http, "POST", "/backups", password=PASSWORD)
    assert task["state"] == "SUCCEEDED", task
    backup_id = task["result"]["id"]
    wait_until(lambda: _listed(service, http, backup_id)["heldIn"] == ["primary", "replica"],
               seconds=60, what="the copy to the replica")
    return _listed(service, http, backup_id)


def test_the_copy_survives_losing_the_primary(svc, source_tree):
    http = svc.login()
    backup = _copied_backup(svc, http)
    name = f"{backup['id']}.tar.zst.age"
    replica_file = svc.replica_dir / name
    assert _sha512(replica_file.read_bytes()) == backup["hash"]
    assert (svc.replica_dir / f"{backup['id']}.backup.json").exists()
    svc.remove_stored(name)
    download = http.get(f"{svc.url}/backups/{backup['id']}")
    assert download.status_code == 200
    assert _sha512(download.content) == backup["hash"] == download.headers["X-Content-SHA512"]
    restored = _run(svc, http, "POST", f"/backups/{backup['id']}/restore", password=PASSWORD)
    assert restored["state"] == "SUCCEEDED", restored
    assert assert_same_tree(source_tree, Path(restored["result"]["path"]) / "tree") > 0


def test_a_damaged_primary_restores_from_the_replica(svc, source_tree):
    http = svc.login()
    backup = _copied_backup(svc, http)
    name = f"{backup['id']}.tar.zst.age"
    damaged = bytearray(svc.stored_bytes(name))
    damaged[len(damaged) // 2] ^= 0x40
    svc.overwrite_stored(name, bytes(damaged))
    restored = _run(svc, http, "POST", f"/backups/{backup['id']}/restore", password=PASSWORD)
    assert restored["state"] == "SUCCEEDED", restored
    assert assert_same_tree(source_tree, Path(restored["result"]["path"]) / "tree") > 0


def test_delete_removes_both_copies_and_rekey_renews_the_replica(svc):
    http = svc.login()
    backup = _copied_backup(svc, http)
    rekeyed = _run(svc, http, "POST", f"/backups/{backup['id']}/rekey", password=PASSWORD,
                   newPassword="new-" + PASSWORD)
    assert rekeyed["state"] == "SUCCEEDED", rekeyed
    new_hash = rekeyed["result"]["hash"]
    wait_until(lambda: _listed(svc, http, backup["id"])["heldIn"] == ["primary", "replica"],
               seconds=60, what="the rekeyed copy on the replica")
    replica_file = svc.replica_dir / f"{backup['id']}.tar.zst.age"
    assert _sha512(replica_file.read_bytes()) == new_hash != backup["hash"]
    deleted = _run(svc, http, "DELETE", f"/backups/{backup['id']}")
    assert deleted["state"] == "SUCCEEDED", deleted
    assert not replica_file.exists()
    assert not (svc.replica_dir / f"{backup['id']}.backup.json").exists()


def test_copy_on_demand_keeps_a_good_copy(svc):
    http = svc.login()
    backup = _copied_backup(svc, http)
    again = _run(svc, http, "POST", f"/backups/{backup['id']}/copy")
    assert (again["state"], again["result"]["hash"]) == ("SUCCEEDED", backup["hash"]), again
    assert again["result"]["replica"] == str(svc.replica_dir)
    assert again["result"]["bytes"] == (svc.replica_dir / f"{backup['id']}.tar.zst.age").stat(
        ).st_size
