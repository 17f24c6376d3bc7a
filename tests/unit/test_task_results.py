"""What `h4backup ... --wait` prints when a task ends well, line for line, for each kind: the
view comes from the table of kinds, and must say what it said when it was written by hand."""

import pytest

from cli.output import when
from cli.task_view import result_lines

CREATED = 1_700_000_000_000
HEAD = [("task", "t1"), ("state", "SUCCEEDED"), ("took", "0:00:03")]


def _ended(result_type: str | None, result: dict | None, **workflow) -> dict:
    return {"id": "t1", "state": "SUCCEEDED", "startTime": 1000, "endTime": 4000,
            "resultType": result_type, "result": result,
            "workflowInfo": workflow or {"type": "backup", "resourceId": "b1"}}


BACKUP = _ended("BackupInfo", {"id": "b1", "generatedOn": CREATED, "hash": "SHA-512:AB"})


def test_backup_shows_the_stored_size_the_client_learnt_beside_the_result():
    assert result_lines(BACKUP, {"bytes_stored": 12345}) == [
        *HEAD, ("backup", "b1"), ("created", when(CREATED)), ("stored", "12.3 kB"),
        ("hash", "SHA-512:AB")]


def test_backup_without_a_stored_size_says_so():
    assert ("stored", "-") in result_lines(BACKUP, {})


def test_restore_says_where_on_the_server():
    task = _ended("RestoreInfo", {"backupId": "b1", "path": "/r/x", "files": 3, "bytes": 4567})
    assert result_lines(task, {}) == [
        *HEAD, ("backup", "b1"), ("restored to", "/r/x (on the server)"), ("files", "3"),
        ("bytes", "4.6 kB")]


def test_verify_with_the_key_reads_every_file():
    task = _ended("VerifyInfo", {"backupId": "b1", "hashOk": True, "contentChecked": True,
                                 "files": 3, "bytes": 4567})
    assert result_lines(task, {}) == [
        *HEAD, ("backup", "b1"), ("hash", "ok"), ("content", "read in full"), ("files", "3"),
        ("bytes", "4.6 kB")]


@pytest.mark.parametrize("hash_ok, shown", [(True, "ok"), (False, "MISMATCH")])
def test_verify_without_the_key_shows_no_counts(hash_ok, shown):
    task = _ended("VerifyInfo", {"backupId": "b1", "hashOk": hash_ok, "contentChecked": False,
                                 "files": None, "bytes": None})
    assert result_lines(task, {}) == [
        *HEAD, ("backup", "b1"), ("hash", shown),
        ("content", "not checked (no password given)")]


def test_a_task_no_worker_runs_shows_its_resource():
    task = _ended(None, None, type="deleteBackup", resourceId="b9")
    assert result_lines(task, {}) == [*HEAD, ("deleteBackup", "b9")]


def test_a_health_check_shows_only_how_it_ended():
    task = _ended("CloudHealthInfo", {"x": 1}, type="health")
    assert result_lines(task, {}) == HEAD
