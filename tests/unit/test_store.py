import json

import pytest

from common.celery_app import TaskMessage
from common.errors import BackupBusy
from common.states import FINAL_STATES, TaskState, can_move
from common.tasks import new_backup_task, new_task


def _create(store, backup_id="b1", quota=10, user="admin"):
    row = new_backup_task(user, backup_id, encrypted=False)
    return row, store.create_backup_task(row, backup_id, quota, None, 60)


def test_created_task_is_running_with_progress_zero(store):
    _row, created = _create(store)
    task = store.get_task(created.task_id)
    assert (task.state, task.progress, task.end_time) == ("RUNNING", 0, -1)
    assert task.result is None and task.result_type is None and task.warnings == []


def test_progress_only_rises_and_stops_below_100(store):
    row, _ = _create(store)
    assert store.record_progress(row.id, 40)
    assert not store.record_progress(row.id, 30)
    store.record_progress(row.id, 100)
    assert store.get_task(row.id).progress == 99


def test_late_progress_cannot_touch_finished_task(store):
    row, _ = _create(store)
    assert store.succeed(row.id, {"id": "b1"}, "BackupInfo")
    assert not store.record_progress(row.id, 50)
    assert not store.fail(row.id, {"code": "X"})
    task = store.get_task(row.id)
    assert (task.state, task.progress, task.error) == ("SUCCEEDED", 100, None)


def test_failed_task_is_final(store):
    row, _ = _create(store)
    assert store.fail(row.id, {"code": "WorkerLost"})
    assert not store.succeed(row.id, {"id": "b1"}, "BackupInfo")
    assert store.get_task(row.id).state == "FAILED"


def test_finished_task_row_expires(store):
    row, _ = _create(store)
    store.fail(row.id, {"code": "X"})
    assert 0 < store.redis.ttl(store.task_key(row.id)) <= 60


def test_transition_table_allows_only_moves_out_of_running():
    assert can_move(TaskState.RUNNING, TaskState.SUCCEEDED)
    assert not can_move(TaskState.SUCCEEDED, TaskState.RUNNING)
    assert FINAL_STATES == {TaskState.SUCCEEDED, TaskState.FAILED}


def test_repeated_backup_id_returns_the_same_task(store):
    first, _created = _create(store, "same")
    _, again = _create(store, "same")
    assert (again.outcome, again.task_id) == ("exists", first.id)


def test_quota_counts_backups_in_progress(store):
    for n in range(2):
        _create(store, f"b{n}", quota=2)
    _, refused = _create(store, "b3", quota=2)
    assert (refused.outcome, refused.count) == ("quota", 2)


def test_success_lists_backup_atomically_and_frees_pending_slot(store):
    row, _ = _create(store, "b1")
    backup = {"id": "b1", "generatedOn": 5, "hash": "SHA-512:00", "file": "b1.tar.zst", "size": 9}
    store.succeed(row.id, {"id": "b1"}, "BackupInfo", backup=backup)
    assert [b["id"] for b in store.list_backups()] == ["b1"]
    assert store.redis.scard("h4:backups:pending") == 0


def test_failure_releases_backup_id_for_a_retry(store):
    row, _ = _create(store, "b1")
    store.fail(row.id, {"code": "X"})
    _, again = _create(store, "b1")
    assert again.outcome == "created" and again.task_id != row.id


def test_sealed_password_is_gone_when_task_ends(store):
    row = new_backup_task("admin", "b1", encrypted=True)
    store.create_backup_task(row, "b1", 10, "sealed-bytes", 60)
    assert store.sealed_password(row.id) == "sealed-bytes"
    store.fail(row.id, {"code": "X"})
    assert store.sealed_password(row.id) is None


def test_claim_is_exclusive_and_counts_attempts(store):
    row, _ = _create(store)
    assert store.claim(row.id, "w1", 30) == ("claimed", 1)
    assert store.claim(row.id, "w2", 30) == ("busy", 0)
    store.redis.delete(f"h4:task:{row.id}:lease")
    assert store.claim(row.id, "w2", 30) == ("claimed", 2)
    assert not store.renew_lease(row.id, "w1", 30)


def test_claim_of_finished_task_is_refused(store):
    row, _ = _create(store)
    store.fail(row.id, {"code": "X"})
    assert store.claim(row.id, "w1", 30) == ("final", 0)


def test_warnings_are_appended_while_running_only(store):
    row, _ = _create(store)
    assert store.add_warning(row.id, {"code": "FileChanged", "args": ["a"]})
    store.fail(row.id, {"code": "X"})
    assert not store.add_warning(row.id, {"code": "FileChanged", "args": ["b"]})
    assert [w["args"] for w in store.get_task(row.id).warnings] == [["a"]]


def test_list_tasks_filters_by_user_and_drops_expired(store):
    mine, _ = _create(store, "b1", user="alice")
    _create(store, "b2", user="bob")
    assert [t.id for t in store.list_tasks("alice")] == [mine.id]
    store.redis.delete(store.task_key(mine.id))
    assert store.list_tasks("alice") == []


def test_unlist_backup_frees_id_and_quota_slot(store):
    row, _ = _create(store, "b1", quota=1)
    store.succeed(row.id, {"id": "b1"}, "BackupInfo",
                  backup={"id": "b1", "generatedOn": 1, "hash": "h", "file": "b1.tar.zst"})
    assert store.unlist_backup("b1")["file"] == "b1.tar.zst"
    assert store.list_backups() == [] and store.unlist_backup("b1") is None
    assert _create(store, "b1", quota=1)[1].outcome == "created"


def test_cookie_works_once(store):
    store.put_cookie("d1", "b1", 30)
    assert store.take_cookie("d1") == "b1"
    assert store.take_cookie("d1") is None


def test_requeue_is_marked_once_per_attempt(store):
    row, _ = _create(store)
    store.claim(row.id, "w1", 30)
    assert store.mark_requeued(row.id, 1)
    assert not store.mark_requeued(row.id, 1)
    assert store.mark_requeued(row.id, 2)


def test_running_index_follows_task_life(store):
    row, _ = _create(store)
    store.claim(row.id, "w1", 30)
    assert store.running_task_ids() == [row.id] and store.active_leases() == 1
    store.succeed(row.id, None, None)
    assert store.running_task_ids() == [] and store.active_leases() == 0


def test_cancel_of_unclaimed_task_ends_it_at_once(store):
    row, _ = _create(store)
    assert store.request_cancel(row.id, {"code": "TaskCanceled"}) == "ended"
    assert store.get_task(row.id).error["code"] == "TaskCanceled"
    assert store.claim(row.id, "w1", 30) == ("final", 0)


def test_cancel_of_claimed_task_flags_it_for_its_worker(store):
    row, _ = _create(store)
    store.claim(row.id, "w1", 30)
    assert store.request_cancel(row.id, {"code": "TaskCanceled"}) == "flagged"
    assert store.cancel_requested(row.id) and store.get_task(row.id).state == "RUNNING"
    store.fail(row.id, {"code": "TaskCanceled"})
    assert not store.cancel_requested(row.id)
    assert store.request_cancel(row.id, {"code": "TaskCanceled"}) == "final"


def test_schedule_slot_is_taken_once(store):
    store.put_schedule({"intervalSeconds": 1})
    seen = store.schedule_last_run()
    assert store.take_schedule_slot(seen, 5)
    assert not store.take_schedule_slot(seen, 6)


def _message(task_id: str) -> TaskMessage:
    return TaskMessage("h4backup", json.dumps({"task": task_id}))


def test_created_backup_task_and_its_message_land_together(store):
    row = new_backup_task("admin", "b1", encrypted=False)
    created = store.create_backup_task(row, "b1", 10, None, 60, message=_message(row.id))
    assert created.outcome == "created"
    assert store.redis.lrange("h4backup", 0, -1) == [json.dumps({"task": row.id})]


@pytest.mark.parametrize("quota, existing, outcome", [(0, False, "quota"),
                                                      (10, True, "exists")])
def test_refused_or_repeated_backup_task_queues_nothing(store, quota, existing, outcome):
    if existing:
        _create(store, "b1")
    row = new_backup_task("admin", "b1", encrypted=False)
    created = store.create_backup_task(row, "b1", quota, None, 60, message=_message(row.id))
    assert created.outcome == outcome
    assert store.redis.llen("h4backup") == 0


def test_task_over_the_user_cap_queues_nothing(store):
    first = new_backup_task("admin", "b1", encrypted=False)
    store.create_task(first, user_cap=1, message=_message(first.id))
    second = new_backup_task("admin", "b2", encrypted=False)
    assert store.create_task(second, user_cap=1, message=_message(second.id)).outcome == (
        "user_busy")
    assert store.redis.lrange("h4backup", 0, -1) == [json.dumps({"task": first.id})]


def test_session_and_task_read_together_restart_the_idle_timer(store):
    store.put_user("admin", "x", ["ADMINISTRATORS"])
    row, _ = _create(store)
    store.create_session("d1", "admin", ["ADMINISTRATORS"], idle=30)
    store.redis.expire("h4:session:d1", 5)
    session, task = store.touch_session_and_get_task("d1", 30, row.id)
    assert session == {"digest": "d1", "user": "admin", "roles": ["ADMINISTRATORS"]}
    assert task == store.get_task(row.id)
    assert store.redis.ttl("h4:session:d1") > 5


def test_no_task_comes_back_without_a_session(store):
    row, _ = _create(store)
    assert store.touch_session_and_get_task("missing", 30, row.id) == (None, None)


def test_session_with_a_missing_task_gives_no_task(store):
    store.put_user("admin", "x", ["ADMINISTRATORS"])
    store.create_session("d1", "admin", ["ADMINISTRATORS"], idle=30)
    session, task = store.touch_session_and_get_task("d1", 30, "no-such-task")
    assert session["user"] == "admin" and task is None


def _listed(store, backup_id="b1"):
    row, _ = _create(store, backup_id)
    store.succeed(row.id, {"id": backup_id}, "BackupInfo",
                  backup={"id": backup_id, "generatedOn": 1, "hash": "SHA-512:00",
                          "file": f"{backup_id}.tar.zst.age", "size": 9})


def _rekey_task(store, backup_id="b1"):
    row = new_task("admin", "rekey", "backup", backup_id, backup_id=backup_id)
    store.create_task(row)
    return row


def test_a_held_backup_is_neither_unlisted_nor_taken_by_another_task(store):
    _listed(store)
    first, second = _rekey_task(store), _rekey_task(store)
    assert store.hold_backup("b1", first.id, 60) == "held"
    assert store.hold_backup("b1", first.id, 60) == "held"  # its own second attempt
    assert store.hold_backup("b1", second.id, 60) == first.id
    with pytest.raises(BackupBusy):
        store.unlist_backup("b1")
    assert store.unlist_unless_held("b1") is None
    assert [b["id"] for b in store.list_backups()] == ["b1"]
    assert store.hold_backup("missing", first.id, 60) == "missing"


def test_the_hold_goes_when_its_task_ends_and_only_then(store):
    _listed(store)
    holder, other = _rekey_task(store), _rekey_task(store)
    store.hold_backup("b1", holder.id, 60)
    store.fail(other.id, {"code": "X"})  # another task of the same backup ends
    assert store.backup_holder("b1") == holder.id
    store.succeed(holder.id, None, None)
    assert store.backup_holder("b1") is None
    assert store.unlist_backup("b1")["id"] == "b1"


def test_update_listed_backup_changes_a_listed_row_only(store):
    _listed(store)
    assert store.update_listed_backup("b1", {"hash": "SHA-512:11", "size": 10})
    assert {k: store.get_backup("b1")[k] for k in ("hash", "size")} == {
        "hash": "SHA-512:11", "size": 10}
    store.unlist_backup("b1")
    assert not store.update_listed_backup("b1", {"hash": "SHA-512:22"})
    assert store.get_backup("b1") is None
