"""What every backup storage promises its callers, as tests each backend's suite inherits.

A subclass provides a `storage` fixture (an empty, prepared BackupStorage); the folder runs
these in the unit tests, the object store in the integration tests.
"""

from __future__ import annotations

import pytest

from common.backupfile.io.storage import BackupStorage
from common.errors import StorageFailure

NAME = "b-1.tar.zst.age"


def store_bytes(storage: BackupStorage, name: str, *parts: bytes) -> None:
    with storage.create(name) as out:
        for part in parts:
            out.write(part)


def read_all(storage: BackupStorage, name: str) -> bytes:
    with storage.open(name) as opened:
        return opened.stream.read()


class StorageContract:
    def test_a_stored_file_reads_back_whole_with_its_size(self, storage):
        store_bytes(storage, NAME, b"age-", b"x" * 100_000)
        with storage.open(NAME) as opened:
            assert opened.size == 100_004
            assert opened.stream.read() == b"age-" + b"x" * 100_000

    def test_an_opened_file_can_be_peeked_at_before_reading(self, storage):
        store_bytes(storage, NAME, b"age-encryption.org/v1\nrest")
        with storage.open(NAME) as opened:
            assert opened.stream.peek(4)[:4] == b"age-"
            assert opened.stream.read(3) == b"age"

    def test_a_failed_write_leaves_nothing_under_any_name(self, storage):
        with pytest.raises(RuntimeError), storage.create(NAME) as out:
            out.write(b"half a backup")
            raise RuntimeError("the pipeline failed")
        assert storage.stat(NAME) is None
        assert list(storage.list()) == []
        assert storage.remove_orphans(0) == []

    def test_a_second_write_of_a_stored_name_fails_and_keeps_the_first(self, storage):
        store_bytes(storage, NAME, b"first")
        with pytest.raises(StorageFailure):
            store_bytes(storage, NAME, b"second")
        assert read_all(storage, NAME) == b"first"

    def test_a_range_reads_those_bytes_only(self, storage):
        store_bytes(storage, NAME, bytes(range(256)) * 40_000)
        with storage.open_range(NAME, 10, 19) as opened:
            assert (opened.size, opened.stream.read()) == (10, bytes(range(10, 20)))
        with storage.open_range(NAME, 10_239_990, None) as opened:
            assert opened.stream.read() == bytes(range(246, 256))

    def test_stat_gives_size_and_time_of_a_stored_file(self, storage):
        store_bytes(storage, NAME, b"12345")
        found = storage.stat(NAME)
        assert (found.name, found.size) == (NAME, 5)
        assert found.modified_ms > 1_600_000_000_000
        assert found.locked_until_ms is None

    def test_missing_file_is_none_on_stat_and_file_not_found_on_open(self, storage):
        assert storage.stat(NAME) is None
        with pytest.raises(FileNotFoundError), storage.open(NAME):
            pass

    def test_list_holds_finished_backups_only(self, storage):
        store_bytes(storage, "b-2.tar.zst", b"plain")
        store_bytes(storage, NAME, b"sealed")
        assert sorted(o.name for o in storage.list()) == ["b-1.tar.zst.age", "b-2.tar.zst"]

    def test_delete_removes_and_a_second_delete_is_quiet(self, storage):
        store_bytes(storage, NAME, b"x")
        storage.delete(NAME)
        storage.delete(NAME)
        assert storage.stat(NAME) is None

    def test_leftovers_of_one_backup_go_and_others_stay(self, storage):
        store_bytes(storage, NAME, b"stored but never listed")
        store_bytes(storage, "b-2.tar.zst", b"another backup")
        assert storage.remove_leftovers("b-1") == 1
        assert [o.name for o in storage.list()] == ["b-2.tar.zst"]

    def test_names_that_leave_the_storage_are_not_found(self, storage):
        for name in ("../b-1.tar.zst", "x/../../etc/passwd", ".hidden.tar.zst", ""):
            assert storage.stat(name) is None
            with pytest.raises(FileNotFoundError), storage.open(name):
                pass

    def test_a_record_is_kept_beside_its_backup_and_read_back(self, storage):
        storage.write_record("b-1", {"id": "b-1", "hash": "SHA-512:AB"})
        assert storage.read_record("b-1") == {"id": "b-1", "hash": "SHA-512:AB"}
        assert storage.read_record("b-2") is None
        assert list(storage.list()) == []  # a record is no backup

    def test_deleting_a_backup_takes_its_record_with_it(self, storage):
        store_bytes(storage, NAME, b"x")
        storage.write_record("b-1", {"id": "b-1"})
        storage.delete_backup("b-1", NAME)
        assert storage.stat(NAME) is None and storage.read_record("b-1") is None

    def test_leftovers_include_the_record_of_a_backup_never_listed(self, storage):
        store_bytes(storage, NAME, b"x")
        storage.write_record("b-1", {"id": "b-1"})
        assert storage.remove_leftovers("b-1") == 2
        assert storage.read_record("b-1") is None

    def test_a_record_that_is_not_json_reads_as_none(self, storage):
        store_bytes(storage, "b-1.backup.json", b"{not json")
        assert storage.read_record("b-1") is None

    # --- replacing a stored file (a rekey, a second copy brought up to date) ------------------

    def test_a_replace_takes_the_place_of_a_stored_file_only_when_whole(self, storage):
        store_bytes(storage, NAME, b"old bytes")
        with storage.replace(NAME) as out:
            out.write(b"new ")
            assert read_all(storage, NAME) == b"old bytes"
            out.write(b"bytes, longer")
        assert read_all(storage, NAME) == b"new bytes, longer"
        assert [o.name for o in storage.list()] == [NAME]
        assert storage.remove_orphans(0) == []

    def test_a_replace_of_a_name_not_stored_stores_it(self, storage):
        with storage.replace(NAME) as out:
            out.write(b"first")
        assert read_all(storage, NAME) == b"first"

    def test_a_failed_replace_keeps_the_old_file_and_leaves_nothing(self, storage):
        store_bytes(storage, NAME, b"old bytes")
        with pytest.raises(RuntimeError), storage.replace(NAME) as out:
            out.write(b"half of the new")
            raise RuntimeError("the rekey failed")
        assert read_all(storage, NAME) == b"old bytes"
        assert [o.name for o in storage.list()] == [NAME]
        assert storage.remove_orphans(0) == []

    def test_a_record_is_replaced_when_asked_and_refused_otherwise(self, storage):
        storage.write_record("b-1", {"hash": "SHA-512:AB"})
        with pytest.raises(StorageFailure):
            storage.write_record("b-1", {"hash": "SHA-512:CD"})
        storage.write_record("b-1", {"hash": "SHA-512:CD"}, replace=True)
        assert storage.read_record("b-1") == {"hash": "SHA-512:CD"}

    @pytest.mark.parametrize("new_head", [b"HEAD-NEW\n", b"H\n", b"A MUCH LONGER HEAD\n"])
    def test_rewriting_a_head_keeps_the_rest_of_the_file(self, storage, new_head):
        rest = bytes(range(256)) * 4_000
        store_bytes(storage, NAME, b"head-old\n", rest)
        storage.rewrite_head(NAME, len(b"head-old\n"), new_head)
        assert read_all(storage, NAME) == new_head + rest
        assert storage.stat(NAME).size == len(new_head) + len(rest)
        assert [o.name for o in storage.list()] == [NAME]
        assert storage.remove_orphans(0) == []

    def test_rewriting_the_head_twice_gives_the_second(self, storage):
        store_bytes(storage, NAME, b"head-0\n", b"payload")
        storage.rewrite_head(NAME, 7, b"head-1\n")
        storage.rewrite_head(NAME, 7, b"head-2\n")
        assert read_all(storage, NAME) == b"head-2\npayload"

    def test_rewriting_the_head_of_a_missing_file_is_file_not_found(self, storage):
        with pytest.raises(FileNotFoundError):
            storage.rewrite_head(NAME, 4, b"head")
        assert storage.stat(NAME) is None
