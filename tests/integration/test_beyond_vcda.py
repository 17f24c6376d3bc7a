"""Restore, verify, rekey, import, cancel, schedules and public-key backups on real workers."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import time
from pathlib import Path

import pyrage
import pytest
import zstandard

from common.alerts import verify_signature
from common.backupfile.format.age import AgeWriter, generate_x25519_identity
from common.backupfile.io.hashing import format_sha512
from tests.faults.conftest import write_random_tree
from tests.integration.harness import RedisServer, Service, stop_in_background, wait_until
from tests.integration.trees import assert_same_tree, make_tree
from tests.tools import age_decrypts, require_tool
from tests.webhooks import Receiver

pytestmark = pytest.mark.integration

PASSWORD = "beyond-vcda-Pa$$-42"
ALERT_SECRET = "alert-secret-of-the-beyond-tests-0123456789abcdef"


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    root = tmp_path_factory.mktemp("beyond")
    return {"tree": make_tree(root / "tree", files=120),
            "big": write_random_tree(root / "big", 400 * 1024 * 1024)}


@pytest.fixture(scope="module")
def svc(tmp_path_factory, trees, storage_env):
    root = tmp_path_factory.mktemp("beyond-service")
    redis_server = RedisServer(root / "redis").start()
    (root / "alert-secret").write_text(ALERT_SECRET + "\n")
    service = Service(root / "service", redis_server, {"tree": trees["tree"]},
                      extra_env={"H4_SCRYPT_WORK_FACTOR": "12", "H4_BACKUP_QUOTA": "50",
                                 "H4_RESTORE_DIR": str(root / "restores"),
                                 "H4_ALERT_SECRET_FILE": str(root / "alert-secret"),
                                 **storage_env})
    service.start(workers=2, beat=True)
    service.restore_dir = root / "restores"
    yield service
    stop_in_background(service, redis_server)


def _run(service, http, method, path, **body):
    response = http.request(method, f"{service.url}{path}", json=body)
    assert response.status_code == 202, response.text
    return service.wait_for_task(http, response.json()["id"], seconds=180)


def _backup(service, http, **body):
    task = _run(service, http, "POST", "/backups", **body)
    assert task["state"] == "SUCCEEDED", task
    return task["result"]


def _restores(service) -> list[str]:
    return sorted(os.listdir(service.restore_dir)) if service.restore_dir.exists() else []


def test_backup_restore_gives_back_every_file_mode_mtime_and_link(svc, trees):
    http = svc.login()
    backup = _backup(svc, http, password=PASSWORD)
    task = _run(svc, http, "POST", f"/backups/{backup['id']}/restore", password=PASSWORD)
    assert (task["state"], task["resultType"]) == ("SUCCEEDED", "RestoreInfo"), task
    restored = Path(task["result"]["path"]) / "tree"
    assert assert_same_tree(trees["tree"], restored) > 120
    for source in trees["tree"].rglob("*"):
        twin = restored / source.relative_to(trees["tree"])
        if source.is_file() and not source.is_symlink():
            mine, theirs = os.stat(source), os.stat(twin)
            assert (mine.st_mode, int(mine.st_mtime)) == (theirs.st_mode, int(theirs.st_mtime))


def test_verify_with_and_without_password(svc):
    http = svc.login()
    backup = _backup(svc, http, password=PASSWORD)
    full = _run(svc, http, "POST", f"/backups/{backup['id']}/verify", password=PASSWORD)
    assert full["result"]["hashOk"] and full["result"]["contentChecked"], full
    quick = _run(svc, http, "POST", f"/backups/{backup['id']}/verify")
    assert quick["result"]["hashOk"] and not quick["result"]["contentChecked"], quick


def test_a_failure_reaches_a_webhook_signed_and_one_that_was_down_gets_it_later(svc):
    http = svc.login()
    backup = _backup(svc, http, password=PASSWORD)
    receiver = Receiver()
    try:
        targets = {"targets": [{"url": receiver.url, "events": ["task.failed"]}]}
        assert http.put(f"{svc.url}/alerts/config", json=targets).status_code == 200
        failed = _run(svc, http, "POST", f"/backups/{backup['id']}/restore", password="no")
        wait_until(lambda: receiver.got, 10, "the failed event")
        headers, body, received = receiver.got[0]
        assert received - failed["endTime"] / 1000 < 2.0
        assert verify_signature(ALERT_SECRET.encode(), headers["X-H4-Signature"], body)
        event = json.loads(body)
        assert (event["event"], event["task"]["id"]) == ("task.failed", failed["id"])
        assert event["task"]["error"]["code"] == "WrongPassword"

        receiver.close()  # away: the next event waits for it
        failed = _run(svc, http, "POST", f"/backups/{backup['id']}/restore", password="no")
        log = f"{svc.url}/alerts/deliveries"
        wait_until(lambda: any(not e["delivered"] for e in http.get(log).json()), 10,
                   "a failed attempt in the delivery log")
        receiver = Receiver(port=receiver.port)  # back
        wait_until(lambda: receiver.got, 30, "the event, once the receiver is back")
        assert json.loads(receiver.got[0][1])["task"]["id"] == failed["id"]
    finally:
        http.put(f"{svc.url}/alerts/config", json={"targets": []})
        receiver.close()


def test_wrong_password_fails_restore_and_writes_nothing(svc):
    http = svc.login()
    backup = _backup(svc, http, password=PASSWORD)
    before = _restores(svc)
    task = _run(svc, http, "POST", f"/backups/{backup['id']}/restore", password="wrong-one")
    assert (task["state"], task["error"]["code"]) == ("FAILED", "WrongPassword")
    assert _restores(svc) == before


@pytest.mark.parametrize("damage", ["flip", "cut"])
def test_damaged_backup_fails_verify_and_restore_and_writes_nothing(svc, damage):
    http = svc.login()
    backup = _backup(svc, http, password=PASSWORD)
    name = f"{backup['id']}.tar.zst.age"
    data = bytearray(svc.stored_bytes(name))
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    else:
        del data[len(data) // 2:]
    svc.overwrite_stored(name, bytes(data))
    before = _restores(svc)
    for kind, body in (("verify", {}), ("verify", {"password": PASSWORD}),
                       ("restore", {"password": PASSWORD})):
        task = _run(svc, http, "POST", f"/backups/{backup['id']}/{kind}", **body)
        assert (task["state"], task["error"]["code"]) == ("FAILED", "BackupCorrupted"), task
    assert _restores(svc) == before


def _crafted_archive() -> bytes:
    """An age file whose tar holds `../x`, `/etc/x` and a symlink pointing out of the tree."""
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w") as tar:
        for name in ("../x", "/etc/x"):
            member = tarfile.TarInfo(name)
            member.size = 4
            tar.addfile(member, io.BytesIO(b"evil"))
        link = tarfile.TarInfo("tree/escape")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc"
        tar.addfile(link)
    sealed = io.BytesIO()
    writer = AgeWriter.for_passphrase(sealed, PASSWORD, work_factor=10)
    writer.write(zstandard.ZstdCompressor().compress(plain.getvalue()))
    writer.close()
    return sealed.getvalue()


def test_crafted_archive_is_refused_on_restore(svc, tmp_path):
    http = svc.login()
    imported = http.post(f"{svc.url}/backups/import", data=_crafted_archive(),
                         headers={"Content-Type": "application/octet-stream"})
    assert imported.status_code == 202, imported.text
    backup_id = imported.json()["result"]["id"]
    before = _restores(svc)
    task = _run(svc, http, "POST", f"/backups/{backup_id}/restore", password=PASSWORD)
    assert (task["state"], task["error"]["code"]) == ("FAILED", "UnsafeArchiveMember"), task
    assert _restores(svc) == before
    assert not (svc.restore_dir.parent / "x").exists() and not os.path.exists("/etc/x")
    http.delete(f"{svc.url}/backups/{backup_id}")


def test_backup_to_public_key_opens_with_identity(svc, trees, tmp_path):
    identity, recipient = generate_x25519_identity()
    http = svc.login()
    backup = _backup(svc, http, recipients=[recipient])
    path = svc.stored_file(f"{backup['id']}.tar.zst.age", tmp_path)
    plain = pyrage.decrypt(path.read_bytes(), [pyrage.x25519.Identity.from_str(identity)])
    with tarfile.open(fileobj=zstandard.ZstdDecompressor().stream_reader(io.BytesIO(plain)),
                      mode="r|") as tar:
        assert "h4backup-manifest.jsonl" in [m.name for m in tar]
    key_file = tmp_path / "key.txt"
    key_file.write_text(identity + "\n")
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(f"{require_tool('age')} -d -i {key_file} {path} | zstd -d | tar -x -C {out}",
                   shell=True, check=True)
    assert_same_tree(trees["tree"], out / "tree")
    restored = _run(svc, http, "POST", f"/backups/{backup['id']}/restore", identity=identity)
    assert restored["state"] == "SUCCEEDED", restored


def test_cancel_mid_backup_ends_within_two_seconds_and_leaves_no_file(tmp_path, trees,
                                                                      storage_env):
    redis_server = RedisServer(tmp_path / "redis").start()
    # The module's bucket, under a prefix of its own: svc's backups are none of its business.
    own_place = {"H4_S3_PREFIX": "cancel/"} if storage_env else {}
    service = Service(tmp_path / "svc", redis_server, {"big": trees["big"]},
                      extra_env={"H4_SCRYPT_WORK_FACTOR": "10", **storage_env,
                                 **own_place}).start(workers=1)
    try:
        http = service.login()
        task_id = http.post(f"{service.url}/backups", json={"password": PASSWORD}).json()["id"]
        wait_until(lambda: http.get(f"{service.url}/tasks/{task_id}").json()["progress"] >= 5,
                   60, "the backup to get under way")
        wait_until(service.unfinished_writes, 10, "the unfinished write to show")
        asked = time.monotonic()
        assert http.post(f"{service.url}/tasks/{task_id}/cancel").status_code == 202
        task = service.wait_for_task(http, task_id, seconds=10)
        assert time.monotonic() - asked < 2.0
        assert (task["state"], task["error"]["code"]) == ("FAILED", "TaskCanceled")
        assert service.stored_names(records=True) == [] and service.unfinished_writes() == []
        again = http.post(f"{service.url}/tasks/{task_id}/cancel")
        assert again.status_code == 409
    finally:
        service.stop()
        redis_server.stop()


def test_schedule_every_second_keeps_three_and_spares_manual_backups(svc):
    http = svc.login()
    manual = _backup(svc, http)
    _, recipient = generate_x25519_identity()
    assert http.put(f"{svc.url}/backups/config", json={
        "intervalSeconds": 1, "keep": 3, "recipients": [recipient]}).status_code == 200

    def scheduled_runs():
        done = http.get(f"{svc.url}/tasks", params={"user": "scheduler", "state": "SUCCEEDED"})
        return done.json()["total"] >= 6

    wait_until(scheduled_runs, 90, "six scheduled backups", interval=0.5)
    http.put(f"{svc.url}/backups/config", json={"enabled": False, "intervalSeconds": 1})
    wait_until(lambda: not http.get(f"{svc.url}/tasks", params={
        "user": "scheduler", "state": "RUNNING"}).json()["total"], 60, "the last run to end")
    listed = {b["id"] for b in http.get(f"{svc.url}/backups").json()}
    files = {name.split(".")[0] for name in svc.stored_names()}
    scheduled = {t["result"]["id"] for t in http.get(f"{svc.url}/tasks", params={
        "user": "scheduler", "state": "SUCCEEDED"}).json()["items"]}
    assert len(listed & scheduled) == 3
    assert manual["id"] in listed and manual["id"] in files
    assert files & scheduled == listed & scheduled


NEW_PASSWORD = "rekeyed-Pa$$-43"


def _payload(data: bytes) -> bytes:
    """What follows the age header (its MAC line): the file key's encrypted payload."""
    mac_line = data.index(b"\n--- ") + 1
    return data[data.index(b"\n", mac_line) + 1:]


def _age_opens(path: Path, passphrase: str, tmp_path: Path) -> bool:
    return age_decrypts(path, passphrase, tmp_path / "opened.tar.zst").returncode == 0


def test_rekey_rewrites_the_header_only_and_age_opens_it_with_the_new_password_only(
        svc, trees, tmp_path):
    http = svc.login()
    backup = _backup(svc, http, password=PASSWORD)
    name = f"{backup['id']}.tar.zst.age"
    before = svc.stored_file(name, tmp_path).read_bytes()
    task = _run(svc, http, "POST", f"/backups/{backup['id']}/rekey", password=PASSWORD,
                newPassword=NEW_PASSWORD)
    assert (task["state"], task["resultType"]) == ("SUCCEEDED", "RekeyInfo"), task
    assert task["result"]["previousHash"] == backup["hash"] != task["result"]["hash"]
    listed = {b["id"]: b for b in http.get(f"{svc.url}/backups").json()}[backup["id"]]
    assert listed["hash"] == task["result"]["hash"]
    (tmp_path / "after").mkdir()
    after = svc.stored_file(name, tmp_path / "after")
    assert format_sha512(hashlib.sha512(after.read_bytes()).digest()) == listed["hash"]
    assert _payload(after.read_bytes()) == _payload(before)
    assert _age_opens(after, NEW_PASSWORD, tmp_path)
    assert not _age_opens(after, PASSWORD, tmp_path)
    old_key = _run(svc, http, "POST", f"/backups/{backup['id']}/restore", password=PASSWORD)
    assert old_key["error"]["code"] == "WrongPassword", old_key
    restored = _run(svc, http, "POST", f"/backups/{backup['id']}/restore",
                    password=NEW_PASSWORD)
    assert_same_tree(trees["tree"], Path(restored["result"]["path"]) / "tree")


def test_rekey_to_recipients_and_refusals(svc, tmp_path):
    http = svc.login()
    backup = _backup(svc, http, password=PASSWORD)
    identity, recipient = generate_x25519_identity()
    wrong = _run(svc, http, "POST", f"/backups/{backup['id']}/rekey", password="not-it",
                 newRecipients=[recipient])
    assert wrong["error"]["code"] == "WrongPassword", wrong
    task = _run(svc, http, "POST", f"/backups/{backup['id']}/rekey", password=PASSWORD,
                newRecipients=[recipient])
    assert task["state"] == "SUCCEEDED", task
    path = svc.stored_file(f"{backup['id']}.tar.zst.age", tmp_path)
    assert pyrage.decrypt(path.read_bytes(), [pyrage.x25519.Identity.from_str(identity)])
    plain = _backup(svc, http)
    refused = http.post(f"{svc.url}/backups/{plain['id']}/rekey",
                        json={"newPassword": NEW_PASSWORD})
    assert (refused.status_code, refused.json()["code"]) == (409, "BackupNotEncrypted")


def test_a_scheduled_check_marks_a_damaged_backup_and_alerts(svc):
    http = svc.login()
    good, damaged = _backup(svc, http, password=PASSWORD), _backup(svc, http)
    name = f"{damaged['id']}.tar.zst"
    data = bytearray(svc.stored_bytes(name))
    data[len(data) // 2] ^= 0x01
    svc.overwrite_stored(name, bytes(data))
    receiver = Receiver()
    try:
        targets = {"targets": [{"url": receiver.url, "events": ["task.failed"]}]}
        assert http.put(f"{svc.url}/alerts/config", json=targets).status_code == 200
        assert http.put(f"{svc.url}/backups/checks",
                        json={"intervalSeconds": 1}).status_code == 200

        def listed():
            return {b["id"]: b for b in http.get(f"{svc.url}/backups").json()}

        wait_until(lambda: listed()[damaged["id"]].get("integrity") == "damaged", 30,
                   "the damaged backup marked")
        assert http.put(f"{svc.url}/backups/checks", json={"enabled": False}).status_code == 200
        wait_until(lambda: listed()[good["id"]].get("integrity") == "hash-ok", 30,
                   "the good backup checked")
        def alerts_of_damaged():
            return [event for event in (json.loads(body) for _, body, _ in receiver.got)
                    if event["task"]["workflowInfo"]["resourceId"] == damaged["id"]]

        (event, *_) = wait_until(alerts_of_damaged, 10, "the failed check's alert")
        assert (event["task"]["workflowInfo"]["type"], event["task"]["user"],
                event["task"]["error"]["code"]) == ("verify", "scheduler", "BackupCorrupted")
    finally:
        http.put(f"{svc.url}/backups/checks", json={"enabled": False})
        http.put(f"{svc.url}/alerts/config", json={"targets": []})
        receiver.close()
