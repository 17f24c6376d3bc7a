import json

from common.backupfile.io.folder import FolderStorage
from common.celery_app import QUEUE
from common.starting import TaskStarter
from common.tasks import new_backup_task
from worker import maintenance
from worker.maintenance import UNSENT_AGE_MS, reap


def _claimed(store, backup_id="b1", attempts=1):
    row = new_backup_task("admin", backup_id, encrypted=False)
    store.create_backup_task(row, backup_id, 10, None, 60)
    for n in range(attempts):
        store.claim(row.id, f"w{n}", 30)
        store.redis.delete(f"h4:task:{row.id}:lease")  # its worker died
    return row.id


def test_task_whose_worker_died_is_sent_again_once(store, tmp_path):
    task_id = _claimed(store)
    sent = []
    storage = FolderStorage(tmp_path)
    assert reap(store, lambda *args: sent.append(args), 3, storage).requeued == [task_id]
    assert reap(store, lambda *args: sent.append(args), 3, storage).requeued == []
    assert sent == [(task_id, "backup")]


def test_task_out_of_attempts_fails_worker_lost_and_loses_partial_file(store, tmp_path):
    task_id = _claimed(store, attempts=3)
    partial = tmp_path / ".b1.tar.zst.age.x1y2.part"
    partial.write_bytes(b"half")
    report = reap(store, lambda *_: None, 3, FolderStorage(tmp_path))
    assert report.failed == [task_id]
    task = store.get_task(task_id)
    assert (task.state, task.error["code"]) == ("FAILED", "WorkerLost")
    assert not partial.exists()


def test_queued_and_leased_tasks_are_left_alone(store, tmp_path):
    queued = new_backup_task("admin", "q1", encrypted=False)
    store.create_backup_task(queued, "q1", 10, None, 60)
    working = _claimed(store, "b2", attempts=0)
    store.claim(working, "w1", 30)
    assert reap(store, lambda *_: None, 3, FolderStorage(tmp_path)).requeued == []


def test_leftovers_of_one_backup_are_removed_and_no_other_file(tmp_path):
    (tmp_path / ".b1.tar.zst.p.part").write_bytes(b"")
    (tmp_path / "b1.tar.zst.age").write_bytes(b"stored but never recorded")
    (tmp_path / ".b2.tar.zst.p.part").write_bytes(b"")
    (tmp_path / "b2.tar.zst").write_bytes(b"")
    assert FolderStorage(tmp_path).remove_leftovers("b1") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [".b2.tar.zst.p.part", "b2.tar.zst"]


def test_staging_of_a_dead_restore_is_removed_but_a_living_one_kept(tmp_path):
    from worker.maintenance import remove_orphan_stagings

    dead = tmp_path / ".b1-20261126T000000.000Z.0011aabb.staging"
    living = tmp_path / ".b2-20261126T000000.000Z.2233ccdd.staging"
    finished = tmp_path / "b1-20261126T000000.000Z"
    for folder in (dead, living, finished):
        (folder / "tree").mkdir(parents=True)
    assert remove_orphan_stagings(tmp_path, {"b2"}) == [dead.name]
    assert living.exists() and finished.exists()


def test_a_requeued_backup_loses_what_its_dead_worker_left_unfinished(store, tmp_path):
    _claimed(store)
    partial = tmp_path / ".b1.tar.zst.age.0011223344556677.part"
    partial.write_bytes(b"half")
    reap(store, lambda *_: None, 3, FolderStorage(tmp_path))
    assert not partial.exists()


# --- tasks whose message the broker lost -------------------------------------------------

def _accepted(store, settings, dispatcher, backup_id="q1"):
    """A backup task accepted as the API accepts one: its row, and its message queued."""
    row = new_backup_task("admin", backup_id, encrypted=False, recipients=[])
    TaskStarter(store, settings, dispatcher.message).backup(row, backup_id)
    return row


def _a_minute_later(monkeypatch, row):
    monkeypatch.setattr(maintenance, "now_ms", lambda: row.start_time + UNSENT_AGE_MS + 1)


def test_an_unclaimed_task_whose_message_waits_in_the_queue_is_left_alone(
        store, settings, dispatcher, tmp_path, monkeypatch):
    row = _accepted(store, settings, dispatcher)
    _a_minute_later(monkeypatch, row)
    assert reap(store, lambda *_: None, 3, FolderStorage(tmp_path)).resent == []


def test_an_unclaimed_task_whose_message_is_gone_is_sent_again_once(
        store, settings, dispatcher, tmp_path, monkeypatch):
    row = _accepted(store, settings, dispatcher)
    store.redis.delete(QUEUE)  # lost with a Redis restart as a worker received it
    _a_minute_later(monkeypatch, row)
    sent = []
    storage = FolderStorage(tmp_path)
    assert reap(store, lambda *args: sent.append(args), 3, storage).resent == [row.id]
    assert reap(store, lambda *args: sent.append(args), 3, storage).resent == []
    assert sent == [(row.id, "backup")]


def _received(store, row, seconds_ago: float) -> None:
    """The task's message popped by a worker, as kombu records it, `seconds_ago`."""
    (payload,) = store.redis.lrange(QUEUE, 0, -1)
    store.redis.delete(QUEUE)
    store.redis.hset("unacked", "tag-1", json.dumps([json.loads(payload), "", QUEUE]))
    store.redis.zadd("unacked_index", {"tag-1": row.start_time / 1000 + 61 - seconds_ago})


def test_a_message_a_worker_received_moments_ago_counts_as_present(
        store, settings, dispatcher, tmp_path, monkeypatch):
    row = _accepted(store, settings, dispatcher)
    _received(store, row, seconds_ago=2)
    _a_minute_later(monkeypatch, row)
    assert reap(store, lambda *_: None, 3, FolderStorage(tmp_path)).resent == []


def test_a_message_received_a_minute_ago_whose_task_nobody_claimed_is_sent_again(
        store, settings, dispatcher, tmp_path, monkeypatch):
    row = _accepted(store, settings, dispatcher)
    _received(store, row, seconds_ago=61)  # its connection broke before the worker had it
    _a_minute_later(monkeypatch, row)
    sent = []
    assert reap(store, lambda *a: sent.append(a), 3, FolderStorage(tmp_path)).resent == [row.id]
    assert sent == [(row.id, "backup")]


def test_a_young_unclaimed_task_without_a_message_is_left_alone(
        store, settings, dispatcher, tmp_path):
    _accepted(store, settings, dispatcher)
    store.redis.delete(QUEUE)
    assert reap(store, lambda *_: None, 3, FolderStorage(tmp_path)).resent == []
