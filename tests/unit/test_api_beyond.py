"""Part B endpoints on the fake store: restore, verify, cancel, import, schedule, recipients."""

import hashlib
import uuid

import pytest

from common.backupfile.format.age import encrypt_bytes, generate_x25519_identity
from common.backupfile.io.folder import FolderStorage
from common.backupfile.io.mirrored import MirroredStorage
from common.tasks import new_backup_task
from tests.conftest import login, queued


@pytest.fixture
def listed(settings, store):
    backup_id = str(uuid.uuid4())
    row = new_backup_task("admin", backup_id, encrypted=True)
    store.create_backup_task(row, backup_id, 10, None, 60)
    settings.backup_dir.mkdir(parents=True, exist_ok=True)
    (settings.backup_dir / f"{backup_id}.tar.zst.age").write_bytes(b"age")
    info = {"id": backup_id, "generatedOn": 1, "hash": "SHA-512:00"}
    store.succeed(row.id, info, "BackupInfo",
                  backup={**info, "file": f"{backup_id}.tar.zst.age", "size": 3, "encrypted": 1})
    return backup_id


@pytest.mark.parametrize("kind", ["restore", "verify"])
def test_restore_and_verify_start_worker_tasks(client, listed, kind, store):
    response = client.post(f"/backups/{listed}/{kind}", json={"password": "pw-123456"},
                           headers=login(client))
    assert response.status_code == 202
    task = response.get_json()
    assert task["workflowInfo"] == {"type": kind, "resourceType": "backup",
                                    "resourceId": listed, "resourceName": ""}
    assert queued(store)[-1] == (f"h4.backup.{kind}", [task["id"]])
    sealed = store.redis.get(f"h4:task:{task['id']}:secret")
    assert sealed and "pw-123456" not in sealed


def test_restore_of_unknown_backup_is_404(client):
    response = client.post(f"/backups/{uuid.uuid4()}/restore", json={}, headers=login(client))
    assert response.get_json()["code"] == "BackupNotFound"


def test_restore_with_password_and_identity_is_400(client, listed):
    identity, _ = generate_x25519_identity()
    response = client.post(f"/backups/{listed}/restore",
                           json={"password": "x", "identity": identity}, headers=login(client))
    assert response.status_code == 400


def test_cancel_of_queued_task_ends_it_and_second_cancel_is_409(client):
    headers = login(client)
    task_id = client.post("/backups", json={}, headers=headers).get_json()["id"]
    response = client.post(f"/tasks/{task_id}/cancel", headers=headers)
    assert response.status_code == 202
    assert (response.get_json()["state"], response.get_json()["error"]["code"]) == (
        "FAILED", "TaskCanceled")
    again = client.post(f"/tasks/{task_id}/cancel", headers=headers)
    assert (again.status_code, again.get_json()["code"]) == (409, "Conflict")


def test_backup_to_recipients_is_accepted_and_bad_keys_are_400(client, store):
    _, recipient = generate_x25519_identity()
    headers = login(client)
    task = client.post("/backups", json={"recipients": [recipient]}, headers=headers).get_json()
    assert store.get_task(task["id"]).recipients == [recipient]
    bad = client.post("/backups", json={"recipients": ["age1nope"]}, headers=headers)
    assert bad.status_code == 400
    both = client.post("/backups", json={"recipients": [recipient], "password": "p"},
                       headers=headers)
    assert both.status_code == 400


def test_schedule_round_trips_and_rejects_nonsense(client):
    headers = login(client)
    assert client.get("/backups/config", headers=headers).get_json()["enabled"] is False
    _, recipient = generate_x25519_identity()
    config = {"intervalSeconds": 3600, "keep": 3, "recipients": [recipient]}
    put = client.put("/backups/config", json=config, headers=headers)
    assert put.status_code == 200
    assert client.get("/backups/config", headers=headers).get_json()["keep"] == 3
    for bad in ({"cron": "61 * * * *"}, {"intervalSeconds": 5, "cron": "* * * * *"}, {},
                {"cron": "* * *"}, {"intervalSeconds": 0}):
        assert client.put("/backups/config", json=bad, headers=headers).status_code == 400, bad


def _upload(client, data: bytes, query: str = ""):
    headers = {**login(client), "Content-Type": "application/octet-stream"}
    return client.post(f"/backups/import{query}", data=data, headers=headers)


def test_import_lists_the_uploaded_file_with_its_hash(client, settings):
    data = encrypt_bytes(bytes(range(256)) * 4000, "import-Pa$$", work_factor=10)
    digest = hashlib.sha512(data).digest()
    expected = "SHA-512:" + ":".join(f"{b:02X}" for b in digest)
    response = _upload(client, data, f"?hash={expected}")
    assert response.status_code == 202, response.get_json()
    task = response.get_json()
    assert task["state"] == "SUCCEEDED" and task["result"]["hash"] == expected
    stored = settings.backup_dir / f"{task['result']['id']}.tar.zst.age"
    assert stored.read_bytes() == data
    listed = client.get("/backups", headers=login(client)).get_json()
    assert [b["id"] for b in listed] == [task["result"]["id"]]


def test_import_with_wrong_hash_keeps_nothing(client, settings):
    wrong = "SHA-512:" + ":".join(["AB"] * 64)
    response = _upload(client, b"\x28\xb5\x2f\xfd" + b"z" * 1000, f"?hash={wrong}")
    assert (response.status_code, response.get_json()["code"]) == (400, "BadUserInput")
    assert list(settings.backup_dir.iterdir()) == []


def test_import_of_something_else_is_400_and_json_is_415(client):
    assert _upload(client, b"<html>").status_code == 400
    headers = login(client)
    assert client.post("/backups/import", json={}, headers=headers).status_code == 415


def test_labels_are_kept_on_the_task_and_filter_the_listing(client, store):
    headers = login(client)
    labels = {"env": "prod", "app.name": "db-1"}
    task = client.post("/backups", json={"labels": labels}, headers=headers).get_json()
    assert store.get_task(task["id"]).labels == labels
    for n, kept in enumerate(({"env": "prod"}, {"env": "test"}, None)):
        row = new_backup_task("admin", f"b{n}", encrypted=False, labels=kept)
        store.create_backup_task(row, f"b{n}", 100, None, 60)
        store.succeed(row.id, {"id": f"b{n}"}, "BackupInfo", backup={
            "id": f"b{n}", "generatedOn": n, "hash": "SHA-512:00", "file": f"b{n}.tar.zst",
            "size": 1, **({"labels": kept} if kept is not None else {})})

    def listed(query: str) -> list[str]:
        return [b["id"] for b in client.get(f"/backups{query}", headers=headers).get_json()]

    assert listed("?label=env=prod") == ["b0"]
    assert listed("?label=env=test&label=env=prod") == []
    assert listed("") == ["b2", "b1", "b0"]
    assert client.get("/backups", headers=headers).get_json()[1]["labels"] == {"env": "test"}
    assert client.get("/backups?label=env", headers=headers).status_code == 400


@pytest.mark.parametrize("labels", [{"bad key": "x"}, {"k": 1}, {"k": "v" * 257},
                                    {f"k{n}": "v" for n in range(33)}, ["k=v"]])
def test_bad_labels_are_400(client, labels):
    response = client.post("/backups", json={"labels": labels}, headers=login(client))
    assert response.status_code == 400, labels


def test_rekey_starts_a_task_with_the_keys_sealed_and_new_recipients_on_the_row(
        client, listed, store):
    headers = login(client)
    response = client.post(f"/backups/{listed}/rekey",
                           json={"password": "old-pw-1", "newPassword": "new-pw-2"},
                           headers=headers)
    assert response.status_code == 202
    task = response.get_json()
    assert queued(store)[-1] == ("h4.backup.rekey", [task["id"]])
    sealed = store.redis.get(f"h4:task:{task['id']}:secret")
    assert sealed and "old-pw-1" not in sealed and "new-pw-2" not in sealed
    _, recipient = generate_x25519_identity()
    store.fail(task["id"], {"code": "X"})
    task = client.post(f"/backups/{listed}/rekey",
                       json={"password": "old-pw-1", "newRecipients": [recipient]},
                       headers=headers).get_json()
    assert store.get_task(task["id"]).recipients == [recipient]


@pytest.mark.parametrize("body", [
    {"password": "p"},  # no new key
    {"password": "p", "newPassword": "n", "newRecipients": ["age1x"]},
    {"password": "p", "newRecipients": ["age1nope"]},
    {"password": "p", "newPassword": ""},
    {"password": "p", "newPassword": "n", "newpassword": "n"},
])
def test_rekey_without_exactly_one_good_new_key_is_400(client, listed, body):
    response = client.post(f"/backups/{listed}/rekey", json=body, headers=login(client))
    assert response.status_code == 400 and response.get_json()["code"] == "BadUserInput"


def test_rekey_of_a_plain_backup_or_a_held_one_is_409(client, listed, settings, store):
    headers = login(client)
    store.update_listed_backup(listed, {"encrypted": 0})
    plain = client.post(f"/backups/{listed}/rekey",
                        json={"newPassword": "n"}, headers=headers).get_json()
    assert plain["code"] == "BackupNotEncrypted"
    store.update_listed_backup(listed, {"encrypted": 1})
    first = client.post(f"/backups/{listed}/rekey", json={"password": "p", "newPassword": "n"},
                        headers=headers).get_json()
    store.hold_backup(listed, first["id"], 60)
    for method, path in (("post", f"/backups/{listed}/rekey"), ("delete", f"/backups/{listed}")):
        refused = getattr(client, method)(path, json={"password": "p", "newPassword": "m"},
                                          headers=headers)
        assert refused.status_code == 409 and refused.get_json()["code"] == "BackupBusy"
    assert store.get_backup(listed) is not None


def test_check_schedule_round_trips_and_refuses_nonsense(client):
    headers = login(client)
    assert client.get("/backups/checks", headers=headers).get_json()["enabled"] is False
    config = {"enabled": True, "cron": "0 3 * * 0", "full": True}
    put = client.put("/backups/checks", json=config, headers=headers)
    assert put.status_code == 200
    assert client.get("/backups/checks", headers=headers).get_json() == {
        **config, "intervalSeconds": None}
    for bad in ({"intervalSeconds": 0}, {"cron": "soon"},
                {"intervalSeconds": 60, "cron": "0 3 * * *"},
                {"intervalSeconds": 3600, "identity": "AGE-SECRET-KEY-1"}):
        refused = client.put("/backups/checks", json=bad, headers=headers)
        assert refused.get_json()["code"] == "BadUserInput", bad
    assert client.put("/backups/checks", json={"enabled": False},
                      headers=headers).status_code == 200


def test_the_listing_says_how_the_last_check_went_and_where_copies_are(
        client, listed, store, app, tmp_path):
    headers = login(client)
    (row,) = client.get("/backups", headers=headers).get_json()
    assert set(row) == {"id", "generatedOn", "hash"}  # a vCDA client's listing, unchanged
    store.update_listed_backup(listed, {"integrity": "damaged", "checkedOn": 5,
                                        "replicaHash": "SHA-512:00"})
    services = app.extensions["h4"]
    services.storage = MirroredStorage(services.storage, FolderStorage(tmp_path / "replica"))
    (row,) = client.get("/backups", headers=headers).get_json()
    assert (row["integrity"], row["checkedOn"], row["heldIn"]) == (
        "damaged", 5, ["primary", "replica"])


def test_copy_without_a_replica_is_409(client, listed):
    response = client.post(f"/backups/{listed}/copy", headers=login(client))
    assert (response.status_code, response.get_json()["code"]) == (409, "NoReplica")
