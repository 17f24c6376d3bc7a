"""The whole service with its backups in a real object store (SeaweedFS): backups, downloads
with ranges, restore, verify, import, delete, cancel, object lock, and the catalogue rebuilt
after Redis lost it."""

from __future__ import annotations

import hashlib
import os
import signal
import time

import pytest
import requests

from common.backupfile.io.hashing import format_sha512
from tests.faults.conftest import write_random_tree
from tests.integration.harness import (
    RedisServer,
    Service,
    lease_holder_pid,
    parent_pid,
    stop_in_background,
    wait_until,
)
from tests.integration.objectstore import unique_bucket_name
from tests.integration.trees import make_tree

pytestmark = pytest.mark.integration

PASSWORD = "s3-backups-Pa$$-42"


def s3_env(object_store, root, bucket: str, **more: str) -> dict[str, str]:
    """The settings of a service keeping its backups in `bucket`, keys from files."""
    keys = root / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    (keys / "access").write_text(object_store.access_key + "\n")
    (keys / "secret").write_text(object_store.secret_key + "\n")
    for path in keys.iterdir():
        path.chmod(0o600)
    return {"H4_STORAGE": "s3", "H4_S3_ENDPOINT": object_store.endpoint,
            "H4_S3_BUCKET": bucket, "H4_S3_PREFIX": "h4/", "H4_S3_REGION": object_store.region,
            "H4_S3_ACCESS_KEY_FILE": str(keys / "access"),
            "H4_S3_SECRET_KEY_FILE": str(keys / "secret"),
            "H4_SCRYPT_WORK_FACTOR": "12", "H4_RESTORE_DIR": str(root / "restores"), **more}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("s3-source") / "tree", files=80)


@pytest.fixture(scope="module")
def svc(tmp_path_factory, object_store, tree):
    root = tmp_path_factory.mktemp("s3-service")
    bucket = object_store.create_bucket(unique_bucket_name("h4svc"))
    redis_server = RedisServer(root / "redis").start()
    service = Service(root / "service", redis_server, {"tree": tree},
                      extra_env=s3_env(object_store, root, bucket))
    service.start(workers=1, beat=True)
    service.bucket, service.s3 = bucket, object_store.client()
    yield service
    stop_in_background(service, redis_server)


def keys_in(service) -> list[str]:
    listed = service.s3.list_objects_v2(Bucket=service.bucket, Prefix="h4/")
    return sorted(item["Key"] for item in listed.get("Contents", []))


def unfinished_uploads(service) -> list[str]:
    answer = service.s3.list_multipart_uploads(Bucket=service.bucket, Prefix="h4/")
    return [upload["Key"] for upload in answer.get("Uploads", [])]


def run(service, http, method, path, **body) -> dict:
    response = http.request(method, f"{service.url}{path}", json=body)
    assert response.status_code == 202, response.text
    return service.wait_for_task(http, response.json()["id"], seconds=120)


def backup(service, http) -> dict:
    task = run(service, http, "POST", "/backups", password=PASSWORD)
    assert task["state"] == "SUCCEEDED", task
    return task["result"]


def stored_bytes(service, backup_id: str) -> bytes:
    key = f"h4/{backup_id}.tar.zst.age"
    return service.s3.get_object(Bucket=service.bucket, Key=key)["Body"].read()


def test_a_backup_is_an_object_and_a_record_and_nothing_on_disk(svc):
    http = svc.login()
    made = backup(svc, http)
    assert f"h4/{made['id']}.tar.zst.age" in keys_in(svc)
    assert f"h4/{made['id']}.backup.json" in keys_in(svc)
    data = stored_bytes(svc, made["id"])
    assert format_sha512(hashlib.sha512(data).digest()) == made["hash"]
    assert not svc.backup_dir.exists() or list(svc.backup_dir.iterdir()) == []
    assert unfinished_uploads(svc) == []


def test_a_download_streams_the_object_with_ranges_and_etag(svc):
    http = svc.login()
    made = backup(svc, http)
    data = stored_bytes(svc, made["id"])
    whole = http.get(f"{svc.url}/backups/{made['id']}")
    assert (whole.status_code, whole.content) == (200, data)
    assert whole.headers["X-Content-SHA512"] == made["hash"]
    part = http.get(f"{svc.url}/backups/{made['id']}", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == data[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    again = http.get(f"{svc.url}/backups/{made['id']}",
                     headers={"If-None-Match": whole.headers["ETag"]})
    assert again.status_code == 304
    beyond = http.get(f"{svc.url}/backups/{made['id']}",
                      headers={"Range": f"bytes={len(data) + 10}-"})
    assert beyond.status_code == 416


def test_a_download_cookie_works_as_with_a_folder(svc):
    http = svc.login()
    made = backup(svc, http)
    cookie = http.post(f"{svc.url}/backups/cookie/{made['id']}").json()["cookie"]
    anonymous = requests.Session()
    anonymous.trust_env, anonymous.verify = False, http.verify
    got = anonymous.get(f"{svc.url}/backups/cookie/{made['id']}", params={"cookie": cookie})
    assert (got.status_code, got.content) == (200, stored_bytes(svc, made["id"]))


def test_an_import_is_stored_in_the_bucket_and_listed(svc):
    http = svc.login()
    made = backup(svc, http)
    data = stored_bytes(svc, made["id"])
    imported = http.post(f"{svc.url}/backups/import", data=data,
                         headers={"Content-Type": "application/octet-stream"})
    assert imported.status_code == 202, imported.text
    new_id = imported.json()["result"]["id"]
    assert stored_bytes(svc, new_id) == data
    listed = {b["id"]: b for b in http.get(f"{svc.url}/backups").json()}
    assert listed[new_id]["hash"] == made["hash"]


def test_a_delete_removes_the_object_and_its_record(svc):
    http = svc.login()
    made = backup(svc, http)
    deleted = http.delete(f"{svc.url}/backups/{made['id']}")
    assert deleted.status_code in (200, 202), deleted.text
    assert not [key for key in keys_in(svc) if made["id"] in key]
    assert made["id"] not in {b["id"] for b in http.get(f"{svc.url}/backups").json()}


def test_after_redis_is_flushed_the_admin_logs_in_and_backups_are_listed_again(svc):
    http = svc.login()
    made = backup(svc, http)
    before = {b["id"]: b for b in http.get(f"{svc.url}/backups").json()}
    svc.redis.client().flushall()
    http = svc.login()  # the administrator comes back from its settings

    def listing() -> dict:
        return {b["id"]: b for b in http.get(f"{svc.url}/backups").json()}

    wait_until(lambda: listing() == before, 30, "the reaper to list every backup again")
    got = http.get(f"{svc.url}/backups/{made['id']}")
    assert got.content == stored_bytes(svc, made["id"])


def test_an_unreachable_store_fails_the_backup_with_storage_unavailable(tmp_path, object_store,
                                                                       tree):
    redis_server = RedisServer(tmp_path / "redis").start()
    env = s3_env(object_store, tmp_path, "nowhere", H4_S3_ENDPOINT="http://127.0.0.1:9")
    service = Service(tmp_path / "svc", redis_server, {"tree": tree}, extra_env=env)
    service.start(workers=1)
    try:
        http = service.login()
        started = time.monotonic()
        task = run(service, http, "POST", "/backups", password=PASSWORD)
        assert (task["state"], task["error"]["code"]) == ("FAILED", "StorageUnavailable"), task
        assert time.monotonic() - started < 60
    finally:
        stop_in_background(service, redis_server)


def test_a_locked_backup_cannot_be_deleted_and_stays_listed(tmp_path, object_store, tree):
    bucket = object_store.create_bucket(unique_bucket_name("h4locked"), object_lock=True)
    redis_server = RedisServer(tmp_path / "redis").start()
    env = s3_env(object_store, tmp_path, bucket, H4_S3_LOCK_MODE="COMPLIANCE",
                 H4_S3_LOCK_DAYS="1")
    service = Service(tmp_path / "svc", redis_server, {"tree": tree}, extra_env=env)
    service.start(workers=1)
    service.bucket, service.s3 = bucket, object_store.client()
    try:
        http = service.login()
        made = backup(service, http)
        refused = http.delete(f"{service.url}/backups/{made['id']}")
        assert refused.status_code == 409, refused.text
        assert refused.json()["code"] == "BackupLocked"
        assert made["id"] in {b["id"] for b in http.get(f"{service.url}/backups").json()}
        assert http.get(f"{service.url}/backups/{made['id']}").status_code == 200
    finally:
        stop_in_background(service, redis_server)


def test_a_worker_killed_mid_upload_leaves_no_object_and_the_reaper_aborts_the_upload(
        tmp_path, object_store):
    bucket = object_store.create_bucket(unique_bucket_name("h4kill"))
    big = write_random_tree(tmp_path / "big", 96 * 1024 * 1024)
    redis_server = RedisServer(tmp_path / "redis").start()
    # One attempt: the reaper gives the task up rather than sending it to the survivor, whose
    # new upload would blur what the dead worker left.
    # zstd at level 19 keeps the backup slow, so the upload is surely under way at the kill
    # and not completing as the worker dies.
    env = s3_env(object_store, tmp_path, bucket, H4_LEASE_SECONDS="3", H4_MAX_ATTEMPTS="1",
                 H4_ZSTD_LEVEL="19")
    service = Service(tmp_path / "svc", redis_server, {"big": big}, extra_env=env)
    service.start(workers=2, beat=True)  # the reaper runs on the survivor
    service.bucket, service.s3 = bucket, object_store.client()
    try:
        http = service.login()
        task_id = http.post(f"{service.url}/backups", json={"password": PASSWORD}).json()["id"]
        wait_until(lambda: unfinished_uploads(service), 60, "the upload to begin")
        holder = wait_until(lambda: lease_holder_pid(redis_server.client(), task_id), 10,
                            "the lease holder")
        for pid in (parent_pid(holder), holder):  # the whole worker, pool process and all
            os.kill(pid, signal.SIGKILL)
        assert keys_in(service) == []
        task = service.wait_for_task(http, task_id, seconds=30)
        assert (task["state"], task["error"]["code"]) == ("FAILED", "WorkerLost")
        # The reaper fails the task first, then removes what its attempt left.
        wait_until(lambda: not unfinished_uploads(service), 15, "the upload to be aborted")
        assert keys_in(service) == []
    finally:
        stop_in_background(service, redis_server)
