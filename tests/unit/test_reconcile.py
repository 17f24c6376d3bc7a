"""Rebuilding the catalogue from the storage: what is stored is listed again, what is gone is
dropped, and nothing a running task is writing is touched."""

import hashlib

import pytest

from common.backupfile.io.folder import FolderStorage
from common.backupfile.io.hashing import format_sha512
from common.reconcile import reconcile
from common.records import record_of, row_of

DATA = b"stored bytes"
HASH = format_sha512(hashlib.sha512(DATA).digest())


@pytest.fixture
def storage(tmp_path):
    storage = FolderStorage(tmp_path / "backups")
    storage.prepare()
    return storage


def stored_backup(storage, backup_id="b1", kind="manual", recipients=(), record=True) -> dict:
    name = f"{backup_id}.tar.zst.age"
    with storage.create(name) as out:
        out.write(DATA)
    row = {"id": backup_id, "generatedOn": 1_790_000_000_000, "hash": HASH, "file": name,
           "size": len(DATA), "encrypted": 1, "taskId": "t-" + backup_id, "files": 3,
           "sourceBytes": 300, "kind": kind}
    if record:
        storage.write_record(backup_id, record_of(row, user="admin", operation_id="op-1",
                                                  recipients=recipients, zstd_level=1))
    return row


def test_a_stored_backup_missing_from_redis_is_listed_again_as_it_was(store, storage):
    row = stored_backup(storage, kind="scheduled")
    report = reconcile(store, storage)
    assert report.relisted == ["b1"]
    assert store.get_backup("b1") == row


def test_a_listed_backup_whose_file_is_gone_is_dropped_and_logged(store, storage, caplog):
    row = stored_backup(storage)
    store.relist_backup(row)
    storage.delete_backup("b1", row["file"])
    report = reconcile(store, storage)
    assert report.dropped == ["b1"]
    assert store.get_backup("b1") is None
    assert "b1 is listed but its file" in caplog.text


def test_a_backup_its_task_is_still_writing_is_neither_listed_nor_dropped(store, storage):
    stored_backup(storage)
    store.redis.sadd("h4:backups:pending", "b1")
    assert reconcile(store, storage).relisted == []
    assert store.get_backup("b1") is None


def test_a_backup_without_a_record_is_listed_only_when_asked_to_read_it(store, storage):
    stored_backup(storage, record=False)
    assert reconcile(store, storage).unrecorded == ["b1"]
    assert store.get_backup("b1") is None
    assert reconcile(store, storage, hash_unrecorded=True).relisted == ["b1"]
    listed = store.get_backup("b1")
    assert (listed["hash"], listed["kind"], listed["size"]) == (HASH, "manual", len(DATA))


def test_a_second_run_changes_nothing(store, storage):
    stored_backup(storage)
    reconcile(store, storage)
    report = reconcile(store, storage)
    assert (report.relisted, report.dropped) == ([], [])


def test_a_run_leaves_the_mark_that_the_catalogue_was_checked(store, storage):
    assert not store.catalogue_checked()
    reconcile(store, storage)
    assert store.catalogue_checked()


def test_relisted_backups_count_against_the_quota_again(store, storage):
    for n in range(3):
        stored_backup(storage, f"b{n}")
    reconcile(store, storage)
    assert store.redis.zcard("h4:backups") == 3


def test_the_record_names_the_encryption_but_holds_no_secret(storage):
    row = stored_backup(storage, recipients=("age1examplekey",))
    record = storage.read_record("b1")
    assert record["encryption"] == {"type": "recipients", "recipients": ["age1examplekey"]}
    assert (record["user"], record["operationID"], record["zstdLevel"]) == ("admin", "op-1", 1)
    assert row_of(record, storage.stat(row["file"]))["hash"] == HASH


def test_a_record_of_another_size_or_file_gives_no_row(storage):
    row = stored_backup(storage)
    record = storage.read_record("b1")
    stored = storage.stat(row["file"])
    assert row_of({**record, "size": 1}, stored) is None
    assert row_of({**record, "file": "b2.tar.zst.age"}, stored) is None
    assert row_of({**record, "hash": ["not", "a", "hash"]}, stored) is None
    assert row_of({**record, "labels": {"n": 1}}, stored) is None
    assert row_of({**record, "labels": ["a"]}, stored) is None


def test_labels_come_back_with_the_backup(store, storage):
    row = {**stored_backup(storage, record=False), "labels": {"env": "prod", "n": "2"}}
    storage.write_record("b1", record_of(row, user="admin", operation_id="", zstd_level=1))
    reconcile(store, storage)
    assert store.get_backup("b1")["labels"] == {"env": "prod", "n": "2"}


class FinishingWhileListed(FolderStorage):
    """A worker stores and lists a backup just as the rebuild lists the storage."""

    def __init__(self, folder, store):
        super().__init__(folder)
        self.store, self.finished = store, None

    def list(self):
        seen = list(super().list())  # the listing is taken before the backup is stored
        if self.finished is None:
            self.finished = stored_backup(self, "late")
            self.store.relist_backup(self.finished)  # as the task's FINISH lists it
        return iter(seen)


def test_a_backup_listed_while_the_rebuild_runs_is_not_dropped(store, tmp_path):
    racing = FinishingWhileListed(tmp_path / "race", store)
    racing.prepare()
    report = reconcile(store, racing)
    assert report.dropped == []
    assert store.get_backup("late") is not None
