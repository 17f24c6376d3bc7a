"""TaskRow: the Redis hash it writes and reads back, and the ApiTask document it shows.

The hash field names are shared with the Lua scripts and with rows written by earlier
versions, so the hashes below are literal: they are what the dict encoder before TaskRow
wrote, and what Redis hands back (every value a string)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from api.schemas import ApiTaskSchema
from common.states import TaskState
from common.tasks import ROW_FIELDS, TaskRow, WorkflowInfo, new_backup_task, new_task

TASK_ID = "11111111-2222-3333-4444-555555555555"
STARTED, ENDED = 1700000000000, 1700000005000
WORKFLOW = ('{"type":"backup","resourceType":"backup","resourceId":"b1",'
            '"resourceName":"b1.tar.zst.age"}')

# A scheduled, encrypted backup task as the encoder before TaskRow wrote it (ints as ints).
LEGACY_BACKUP_HASH: dict[str, Any] = {
    "id": TASK_ID, "state": "RUNNING", "progress": 0, "startTime": STARTED, "endTime": -1,
    "lastUpdated": STARTED, "user": "admin", "result": "", "resultType": "", "error": "",
    "warnings": "[]", "workflowInfo": WORKFLOW, "type": "backup", "resourceId": "b1",
    "operationID": "op-1", "attempts": 0, "backupId": "b1", "encrypted": 1,
    "recipients": '["age1xyz"]', "kind": "scheduled",
}

# The same task once finished, as HGETALL returns it after the scripts ran on it: CLAIM
# counted two attempts, MARK_REQUEUED marked one, WARNING added one, FINISH ended it.
LEGACY_FINISHED_HASH: dict[str, str] = {
    **{name: str(value) for name, value in LEGACY_BACKUP_HASH.items()},
    "state": "SUCCEEDED", "progress": "100", "endTime": str(ENDED), "lastUpdated": str(ENDED),
    "result": '{"id":"b1","generatedOn":1700000004000,"hash":"SHA-512:AB"}',
    "resultType": "BackupInfo", "warnings": '[{"code":"W","msg":"m","args":["a"]}]',
    "attempts": "2", "requeuedAttempt": "1",
}

# What the dict decoder before TaskRow made of LEGACY_FINISHED_HASH, as far as the API
# showed it: the ApiTask a client received.
LEGACY_FINISHED_DOCUMENT: dict[str, Any] = {
    "id": TASK_ID, "state": "SUCCEEDED", "progress": 100, "startTime": STARTED,
    "endTime": ENDED, "lastUpdated": ENDED, "user": "admin",
    "result": {"id": "b1", "generatedOn": 1700000004000, "hash": "SHA-512:AB"},
    "resultType": "BackupInfo", "error": None,
    "warnings": [{"code": "W", "msg": "m", "args": ["a"]}],
    "workflowInfo": {"type": "backup", "resourceType": "backup", "resourceId": "b1",
                     "resourceName": "b1.tar.zst.age"},
}


def _as_redis(mapping: dict[str, Any]) -> dict[str, str]:
    """What HGETALL gives back for a mapping HSET wrote: every value a string."""
    return {name: str(value) for name, value in mapping.items()}


def _round_trip(row: TaskRow) -> TaskRow:
    return TaskRow.from_hash(_as_redis(row.to_hash()))


def _legacy_backup_row() -> TaskRow:
    row = new_backup_task("admin", "b1", encrypted=True, operation_id="op-1",
                          recipients=["age1xyz"], kind="scheduled")
    return dataclasses.replace(row, id=TASK_ID, start_time=STARTED, last_updated=STARTED)


# --- round trips -----------------------------------------------------------------------------

def test_a_fresh_row_comes_back_as_it_went_in():
    row = new_task("admin", "verify", "backup", "b1", backup_id="b1")
    assert _round_trip(row) == row
    assert (row.state, row.progress, row.end_time, row.attempts) == ("RUNNING", 0, -1, 0)


def test_a_finished_row_keeps_its_result_error_and_warnings():
    row = new_task("admin", "restore", "backup", "b1", "", "op-9", backup_id="b1")
    warnings = [{"code": "FileChanged", "msg": "changed", "args": ["a"]}]
    succeeded = dataclasses.replace(row, state=TaskState.SUCCEEDED, progress=100, end_time=5,
                                    result={"backupId": "b1", "files": 3}, warnings=warnings,
                                    result_type="RestoreInfo", attempts=2, requeued_attempt=1)
    failed = dataclasses.replace(row, state=TaskState.FAILED, end_time=5,
                                 error={"code": "WorkerLost", "msg": "lost", "args": []})
    assert _round_trip(succeeded) == succeeded
    assert _round_trip(failed) == failed


def test_a_backup_row_keeps_its_backup_fields():
    row = new_backup_task("admin", "b1", encrypted=True, recipients=["age1a", "age1b"],
                          kind="scheduled")
    back = _round_trip(row)
    assert back == row
    assert (back.backup_id, back.encrypted, back.recipients, back.kind) == (
        "b1", True, ["age1a", "age1b"], "scheduled")


def test_fields_a_row_does_not_have_are_left_out_of_the_hash():
    """A restore has no `encrypted`; a backup started without recipients none either: None
    means absent, so the hash holds what it held before TaskRow and no more."""
    restore = new_task("admin", "restore", "backup", "b1", backup_id="b1").to_hash()
    plain = new_backup_task("admin", "b2", encrypted=False).to_hash()
    assert {"encrypted", "recipients", "kind", "requeuedAttempt"}.isdisjoint(restore)
    assert {"recipients", "kind", "requeuedAttempt"}.isdisjoint(plain)
    assert plain["encrypted"] == 0
    # The API writes a backup without recipients with an empty list, which stays one.
    no_recipients = new_backup_task("admin", "b3", encrypted=False, recipients=[])
    assert no_recipients.to_hash()["recipients"] == "[]"
    assert _round_trip(no_recipients).recipients == []


# --- today's hashes --------------------------------------------------------------------------

def test_the_hash_written_is_the_one_written_before_task_row():
    assert _legacy_backup_row().to_hash() == LEGACY_BACKUP_HASH


def test_a_hash_written_before_task_row_loads():
    row = TaskRow.from_hash(LEGACY_FINISHED_HASH)
    assert (row.state, row.progress, row.attempts, row.requeued_attempt) == (
        TaskState.SUCCEEDED, 100, 2, 1)
    assert (row.backup_id, row.encrypted, row.recipients, row.kind) == (
        "b1", True, ["age1xyz"], "scheduled")
    assert row.workflow_info == WorkflowInfo("backup", "backup", "b1", "b1.tar.zst.age")
    assert row.extra == {}
    assert _as_redis(row.to_hash()) == LEGACY_FINISHED_HASH  # written back field for field


def test_the_document_is_the_api_task_clients_received_before():
    row = TaskRow.from_hash(LEGACY_FINISHED_HASH)
    assert row.document() == LEGACY_FINISHED_DOCUMENT
    schema = ApiTaskSchema()
    assert schema.dump(row) == schema.dump(LEGACY_FINISHED_DOCUMENT)


def test_the_document_has_exactly_the_api_task_fields():
    row = new_backup_task("admin", "b1", encrypted=False, recipients=[], kind="scheduled")
    assert set(row.document()) == set(ApiTaskSchema().fields)
    assert set(ApiTaskSchema().dump(row)) == set(ApiTaskSchema().fields)


def test_a_fresh_row_shows_as_a_queued_vcda_task():
    document = new_task("admin", "verify", "backup", "b1").document()
    assert {k: document[k] for k in ("state", "progress", "endTime", "result", "resultType",
                                     "error", "warnings")} == {
        "state": "RUNNING", "progress": 0, "endTime": -1, "result": None, "resultType": None,
        "error": None, "warnings": []}


# --- fields another version wrote ------------------------------------------------------------

def test_an_unknown_field_is_kept_aside_and_written_back():
    stored = {**LEGACY_FINISHED_HASH, "priority": "7"}
    row = TaskRow.from_hash(stored)
    assert row.extra == {"priority": "7"}
    assert _as_redis(row.to_hash()) == stored
    assert "priority" not in row.document()


def test_a_known_field_wins_over_extra_of_the_same_name():
    row = dataclasses.replace(new_task("admin", "verify", "backup", "b1"),
                              extra={"state": "FAILED", "note": "x"})
    assert (row.to_hash()["state"], row.to_hash()["note"]) == ("RUNNING", "x")


def test_a_hash_missing_optional_fields_loads_with_their_starting_values():
    """A row written before operationID or attempts existed still reads."""
    bare = {"id": TASK_ID, "state": "RUNNING", "user": "admin", "type": "backup",
            "resourceId": "b1", "startTime": str(STARTED), "lastUpdated": str(STARTED),
            "workflowInfo": WORKFLOW}
    row = TaskRow.from_hash(bare)
    assert (row.operation_id, row.attempts, row.end_time, row.warnings, row.result_type) == (
        "", 0, -1, [], None)


def test_every_field_a_full_row_writes_is_a_known_field():
    row = dataclasses.replace(_legacy_backup_row(), requeued_attempt=1, labels={"a": "b"})
    assert set(row.to_hash()) == ROW_FIELDS


# --- through the store's scripts -------------------------------------------------------------

def test_a_row_the_scripts_changed_reads_back_typed_with_nothing_unknown(store):
    row = new_backup_task("admin", "b1", encrypted=True, recipients=["age1xyz"],
                          kind="scheduled")
    store.create_backup_task(row, "b1", 10, None, 60)
    assert store.get_task(row.id) == row
    store.claim(row.id, "w1", 30)
    store.record_progress(row.id, 40)
    store.add_warning(row.id, {"code": "FileChanged", "msg": "m", "args": ["a"]})
    store.mark_requeued(row.id, 1)
    store.succeed(row.id, {"id": "b1", "generatedOn": 1, "hash": "SHA-512:00"}, "BackupInfo")
    task = store.get_task(row.id)
    assert (task.state, task.progress, task.attempts, task.requeued_attempt) == (
        TaskState.SUCCEEDED, 100, 1, 1)
    assert (task.result_type, task.warnings[0]["args"], task.extra) == (
        "BackupInfo", ["a"], {})
    assert task.end_time >= task.start_time


def test_a_row_is_a_snapshot_not_a_handle_on_the_task():
    row = new_task("admin", "verify", "backup", "b1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.state = TaskState.FAILED  # type: ignore[misc]
