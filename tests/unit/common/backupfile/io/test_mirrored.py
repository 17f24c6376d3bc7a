"""A primary folder with a replica folder: reads fall back, deletes reach both, copies are
proved by their SHA-512."""

from __future__ import annotations

import hashlib
import os

import pytest

from common.backupfile.io.folder import FolderStorage
from common.backupfile.io.hashing import format_sha512
from common.backupfile.io.mirrored import MirroredStorage
from common.backupfile.io.replicate import CopyJob, copy_backup
from common.errors import BackupCorrupted, BackupNotFound, StorageUnavailable

NAME = "b1.tar.zst.age"
DATA = os.urandom(300_000)
HASH = format_sha512(hashlib.sha512(DATA).digest())


class Quiet:
    def progress(self, percent: int) -> None:
        self.last = percent

    def warning(self, error) -> None:
        raise AssertionError(error)

    def should_stop(self) -> bool:
        return False


@pytest.fixture
def mirrored(tmp_path) -> MirroredStorage:
    storage = MirroredStorage(FolderStorage(tmp_path / "primary"),
                              FolderStorage(tmp_path / "replica"))
    storage.primary.prepare()
    with storage.create(NAME) as out:
        out.write(DATA)
    return storage


def _copy(storage: MirroredStorage, expected: str = HASH) -> int:
    return copy_backup(CopyJob("b1", storage.primary, storage.replica, NAME, expected), Quiet())


def _read(storage, name=NAME) -> bytes:
    with storage.open(name) as opened:
        return opened.stream.read()


def test_a_new_file_goes_to_the_primary_only(mirrored):
    assert mirrored.primary.stat(NAME) is not None and mirrored.replica.stat(NAME) is None


def test_a_copy_arrives_whole_and_reads_fall_back_to_it(mirrored, tmp_path):
    assert _copy(mirrored) == len(DATA)
    assert _read(mirrored.replica) == DATA
    (tmp_path / "primary" / NAME).unlink()
    assert mirrored.stat(NAME).size == len(DATA)
    assert _read(mirrored) == DATA
    assert mirrored.holder_of(NAME)[0] is mirrored.replica
    assert [s.name for s in mirrored.list()] == [NAME]


def test_a_primary_of_the_wrong_size_gives_way_to_the_replica(mirrored, tmp_path):
    _copy(mirrored)
    with open(tmp_path / "primary" / NAME, "r+b") as damaged:
        damaged.truncate(1000)
    holder, found = mirrored.holder_of(NAME, len(DATA))
    assert (holder, found.size) == (mirrored.replica, len(DATA))
    assert mirrored.holder_of(NAME)[0] is mirrored.primary  # no size to check against


def test_a_damaged_source_leaves_no_copy(mirrored, tmp_path):
    with open(tmp_path / "primary" / NAME, "r+b") as damaged:
        damaged.seek(5000)
        damaged.write(b"\x00" * 8)
    with pytest.raises(BackupCorrupted):
        _copy(mirrored)
    assert mirrored.replica.stat(NAME) is None
    assert sorted(os.listdir(tmp_path / "replica")) == []


def test_a_copy_with_another_hash_is_replaced_and_a_good_one_kept(mirrored, tmp_path):
    mirrored.replica.prepare()
    with mirrored.replica.create(NAME) as out:
        out.write(b"an older key's copy")
    _copy(mirrored)
    assert _read(mirrored.replica) == DATA
    before = os.stat(tmp_path / "replica" / NAME).st_ino
    _copy(mirrored)
    assert os.stat(tmp_path / "replica" / NAME).st_ino == before


def test_a_missing_source_is_backup_not_found(tmp_path):
    storage = MirroredStorage(FolderStorage(tmp_path / "p"), FolderStorage(tmp_path / "r"))
    with pytest.raises(BackupNotFound):
        _copy(storage)


def test_delete_removes_both_copies_and_their_records(mirrored):
    _copy(mirrored)
    mirrored.replica.write_record("b1", {"id": "b1"})
    mirrored.write_record("b1", {"id": "b1"})
    mirrored.delete_backup("b1", NAME)
    for store in (mirrored.primary, mirrored.replica):
        assert store.stat(NAME) is None and store.read_record("b1") is None


class Unreachable(FolderStorage):
    def remove_orphans(self, older_than_seconds: float) -> list[str]:
        raise StorageUnavailable("replica.example", "connection refused")


def test_a_replica_that_is_down_does_not_stop_the_primarys_sweep(tmp_path):
    primary = FolderStorage(tmp_path / "p")
    primary.prepare()
    orphan = tmp_path / "p" / ".b1.tar.zst.age.0123456789abcdef.part"
    orphan.write_bytes(b"left by a dead attempt")
    os.utime(orphan, (1, 1))
    storage = MirroredStorage(primary, Unreachable(tmp_path / "r"))
    assert storage.remove_orphans(60) == [orphan.name]
    assert not orphan.exists()


def test_a_head_is_rewritten_in_the_primary_in_place(mirrored, tmp_path):
    assert mirrored.rewrites_head_in_place(10, 10) and not mirrored.rewrites_head_in_place(10, 9)
    inode = os.stat(tmp_path / "primary" / NAME).st_ino
    mirrored.rewrite_head(NAME, 10, b"H" * 10)
    assert _read(mirrored.primary)[:12] == b"H" * 10 + DATA[10:12]
    assert os.stat(tmp_path / "primary" / NAME).st_ino == inode
