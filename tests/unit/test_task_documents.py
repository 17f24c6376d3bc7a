"""The ApiTask document each task row keeps ready to send, and the writes that check the
caller's session in their own script: what a task poll and a POST /backups cost in Redis."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from api.schemas import ApiTaskSchema
from common.errors import BackupNotFound as NotFound
from common.states import TaskState
from common.store import SessionGate
from common.tasks import new_backup_task, new_task
from tests.conftest import login


def _document(store, task_id: str) -> dict:
    return json.loads(store.redis.hget(store.task_key(task_id), "document"))


def _dumped(store, task_id: str) -> dict:
    """What the schema makes of the row: what the API answered before documents were kept."""
    return json.loads(json.dumps(ApiTaskSchema().dump(store.get_task(task_id))))


def _new(store, user: str = "admin"):
    row = new_backup_task(user, "b-1", encrypted=True, operation_id="op-1")
    assert store.create_backup_task(row, "b-1", quota=10, sealed_password=None,
                                    secret_ttl=60).outcome == "created"
    return row


def test_every_change_of_a_row_renders_the_document_the_schema_would(store):
    row = _new(store)
    assert _document(store, row.id) == _dumped(store, row.id)
    assert store.record_progress(row.id, 42)
    assert _document(store, row.id)["progress"] == 42
    assert store.add_warning(row.id, NotFound("x/ü\"q").to_api_error())
    assert _document(store, row.id) == _dumped(store, row.id)
    assert store.succeed(row.id, {"id": "b-1", "hash": "SHA-512:AB", "generatedOn": 5},
                         "BackupInfo")
    document = _document(store, row.id)
    assert document == _dumped(store, row.id)
    assert (document["state"], document["progress"], document["resultType"]) == (
        "SUCCEEDED", 100, "BackupInfo")


def test_failed_and_recorded_rows_render_their_errors(store):
    row = _new(store)
    assert store.fail(row.id, NotFound("gone").to_api_error())
    assert _document(store, row.id) == _dumped(store, row.id)
    assert _document(store, row.id)["error"]["code"] == NotFound.code
    recorded = replace(new_task("admin", "delete", "backup", "b-2"), state=TaskState.FAILED,
                       end_time=7, error=NotFound("b-2").to_api_error())
    store.record_finished_task(recorded)
    assert _document(store, recorded.id) == _dumped(store, recorded.id)
    assert store.redis.ttl(store.task_key(recorded.id)) > 0


def test_task_poll_answers_the_ready_document_in_one_round_trip(client, store):
    headers = login(client)
    task_id = client.post("/backups", json={}, headers=headers).get_json()["id"]
    store.redis.hset(store.task_key(task_id), "document",
                     store.redis.hget(store.task_key(task_id), "document").replace(
                         '"progress":0', '"progress":77'))
    client.get(f"/tasks/{task_id}", headers=headers)  # Redis has the script from now on
    calls = _count_commands(store)
    response = client.get(f"/tasks/{task_id}", headers=headers)
    assert response.status_code == 200
    assert response.get_json()["progress"] == 77  # the kept document, not the row
    assert response.headers["Content-Type"].startswith("application/vnd.vmware.h4-v4.5+json")
    assert calls == ["EVALSHA"]


def test_a_row_changed_by_another_versions_writer_is_answered_from_the_row(client, store):
    headers = login(client)
    task_id = client.post("/backups", json={}, headers=headers).get_json()["id"]
    store.redis.hset(store.task_key(task_id), mapping={"progress": 55, "lastUpdated": 1})
    assert client.get(f"/tasks/{task_id}", headers=headers).get_json()["progress"] == 55


def test_second_backup_request_checks_the_session_in_its_own_write(client, store):
    headers = login(client)
    first = client.post("/backups", json={}, headers=headers)  # checks the session first
    client.post("/backups", json={}, headers=headers)  # Redis has the script from now on
    calls = _count_commands(store)
    second = client.post("/backups", json={"password": "pw-Secret-1"}, headers=headers)
    assert (first.status_code, second.status_code) == (202, 202)
    assert calls == ["EVALSHA"]
    body = second.get_json()
    assert body == _dumped(store, body["id"])
    assert second.headers["Location"].endswith(f"/tasks/{body['id']}")


def test_a_gated_write_after_logout_is_401_and_writes_nothing(client, store):
    headers = login(client)
    assert client.post("/backups", json={}, headers=headers).status_code == 202
    assert client.delete("/sessions", headers=headers).status_code == 204
    before = store.redis.zcard("h4:tasks")
    assert client.post("/backups", json={}, headers=headers).status_code == 401
    assert store.redis.zcard("h4:tasks") == before


def test_a_gated_write_after_the_user_changed_is_401(client, store):
    headers = login(client)
    assert client.post("/backups", json={}, headers=headers).status_code == 202
    assert store.end_sessions("admin")
    assert client.post("/backups", json={}, headers=headers).status_code == 401
    assert client.get("/sessions", headers=headers).status_code == 401


@pytest.mark.parametrize("role, outcome", [("ADMINISTRATORS", "forbidden"),
                                            ("VIEWERS", "created")])
def test_the_gate_checks_the_role_and_restarts_the_idle_timer(store, role, outcome):
    store.put_user("viewer", "hash", ["VIEWERS"])
    user = store.get_user("viewer")
    assert store.create_session("d1", "viewer", ["VIEWERS"], 60, user["generation"])
    store.redis.expire("h4:session:d1", 5)
    row = new_backup_task("viewer", "b-9", encrypted=False)
    created = store.create_backup_task(row, "b-9", quota=10, sealed_password=None,
                                       secret_ttl=60, gate=SessionGate("d1", "viewer", role,
                                                                       600))
    assert created.outcome == outcome
    assert store.redis.ttl("h4:session:d1") > 5
    assert store.redis.exists(store.task_key(row.id)) == (outcome == "created")


def test_the_gate_refuses_a_session_of_another_user(store):
    store.put_user("viewer", "hash", ["ADMINISTRATORS"])
    assert store.create_session("d1", "viewer", ["ADMINISTRATORS"], 60)
    row = new_backup_task("admin", "b-9", encrypted=False)
    created = store.create_backup_task(row, "b-9", quota=10, sealed_password=None,
                                       secret_ttl=60,
                                       gate=SessionGate("d1", "admin", "ADMINISTRATORS", 60))
    assert created.outcome == "unauthenticated"
    assert not store.redis.exists(store.task_key(row.id))


def _count_commands(store) -> list[str]:
    """The Redis commands the store sends from now on (their names)."""
    calls: list[str] = []
    send = store.redis.execute_command

    def counted(*args, **kwargs):
        calls.append(str(args[0]).upper())
        return send(*args, **kwargs)

    store.redis.execute_command = counted
    return calls
