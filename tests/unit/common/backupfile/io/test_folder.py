import errno
import os
import stat
import time
from pathlib import Path

import pytest

from common.backupfile.io import folder
from common.backupfile.io.folder import (
    AtomicFile,
    FolderStorage,
    is_temporary_name,
    remove_orphan_temporaries,
)
from common.errors import InsufficientStorage, StorageFailure, TaskCanceled
from tests.contracts.storage import StorageContract


def failing_with(code: int):
    def fail(*_args, **_kwargs):
        raise OSError(code, os.strerror(code))
    return fail


def test_success_makes_the_final_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    with AtomicFile(tmp_path / "b.tar.zst") as out:
        out.write(b"hello ")
        out.write(memoryview(b"world"))
    assert os.listdir(tmp_path) == ["b.tar.zst"]
    assert (tmp_path / "b.tar.zst").read_bytes() == b"hello world"


def test_final_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    old_umask = os.umask(0)
    try:
        with AtomicFile(tmp_path / "b") as out:
            out.write(b"x")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o600


def test_bytes_go_to_a_hidden_temporary_name_until_success(tmp_path: Path) -> None:
    with AtomicFile(tmp_path / "b.tar.zst") as out:
        out.write(b"x")
        (name,) = os.listdir(tmp_path)
        assert name.startswith(".b.tar.zst.") and is_temporary_name(name)


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt(), TaskCanceled()])
def test_exception_removes_the_temporary_and_is_reraised(tmp_path: Path, error) -> None:
    with pytest.raises(type(error)), AtomicFile(tmp_path / "b") as out:
        out.write(b"partial")
        raise error
    assert os.listdir(tmp_path) == []


def test_existing_final_file_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "b").write_bytes(b"original")
    with pytest.raises(StorageFailure), AtomicFile(tmp_path / "b") as out:
        out.write(b"new")
    assert (tmp_path / "b").read_bytes() == b"original"
    assert os.listdir(tmp_path) == ["b"]


def test_final_file_appearing_meanwhile_is_not_overwritten(tmp_path: Path) -> None:
    with pytest.raises(StorageFailure), AtomicFile(tmp_path / "b") as out:
        out.write(b"new")
        (tmp_path / "b").write_bytes(b"other writer")
    assert (tmp_path / "b").read_bytes() == b"other writer"
    assert os.listdir(tmp_path) == ["b"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_no_space_while_writing_is_insufficient_storage(tmp_path, monkeypatch, code) -> None:
    with pytest.raises(InsufficientStorage), AtomicFile(tmp_path / "b") as out:
        monkeypatch.setattr(folder.os, "write", failing_with(code))
        out.write(b"x" * 100)
    assert os.listdir(tmp_path) == []


def test_no_space_while_syncing_is_insufficient_storage(tmp_path, monkeypatch) -> None:
    with pytest.raises(InsufficientStorage), AtomicFile(tmp_path / "b") as out:
        out.write(b"x")
        monkeypatch.setattr(folder.os, "fsync", failing_with(errno.ENOSPC))
    assert os.listdir(tmp_path) == []


def test_other_write_errors_are_storage_failures(tmp_path, monkeypatch) -> None:
    with pytest.raises(StorageFailure) as caught, AtomicFile(tmp_path / "b") as out:
        monkeypatch.setattr(folder.os, "write", failing_with(errno.EIO))
        out.write(b"x")
    assert caught.value.args_list == [os.strerror(errno.EIO)]
    assert os.listdir(tmp_path) == []


def test_missing_folder_is_a_storage_failure(tmp_path: Path) -> None:
    with pytest.raises(StorageFailure), AtomicFile(tmp_path / "nowhere" / "b"):
        pass


def test_short_writes_are_completed(tmp_path, monkeypatch) -> None:
    real_write = os.write
    monkeypatch.setattr(folder.os, "write", lambda fd, data: real_write(fd, data[:3]))
    with AtomicFile(tmp_path / "b") as out:
        out.write(b"0123456789")
    assert (tmp_path / "b").read_bytes() == b"0123456789"


def test_is_temporary_name_matches_only_unfinished_files() -> None:
    assert is_temporary_name(".b.tar.zst.0123456789abcdef.part")
    assert not is_temporary_name("b.tar.zst")
    assert not is_temporary_name(".b.tar.zst.part")
    assert not is_temporary_name(".hidden")


def test_orphan_temporaries_older_than_the_limit_are_removed(tmp_path: Path) -> None:
    old = tmp_path / ".a.tar.zst.0123456789abcdef.part"
    recent = tmp_path / ".b.tar.zst.fedcba9876543210.part"
    kept = tmp_path / "c.tar.zst"
    for path in (old, recent, kept):
        path.write_bytes(b"x")
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    os.utime(kept, (hour_ago, hour_ago))
    assert remove_orphan_temporaries(tmp_path, older_than_seconds=600) == [old]
    assert sorted(os.listdir(tmp_path)) == sorted([recent.name, kept.name])


class TestFolderStorage(StorageContract):
    @pytest.fixture
    def storage(self, tmp_path):
        storage = FolderStorage(tmp_path / "backups")
        storage.prepare()
        return storage

    def test_prepare_makes_a_private_folder(self, tmp_path):
        FolderStorage(tmp_path / "new").prepare()
        assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700

    def test_unfinished_writes_of_a_dead_attempt_count_as_leftovers(self, storage):
        (storage.folder / ".b-1.tar.zst.age.0011223344556677.part").write_bytes(b"half")
        assert storage.remove_leftovers("b-1") == 1
        assert os.listdir(storage.folder) == []


# --- a head rewritten in place, behind a journal -------------------------------------------

HEAD_OLD, HEAD_NEW = b"head-old\n", b"HEAD-NEW\n"
PAYLOAD = os.urandom(100_000)


@pytest.fixture
def storage(tmp_path) -> FolderStorage:
    storage = FolderStorage(tmp_path / "backups")
    storage.prepare()
    with storage.create("b-1.tar.zst.age") as out:
        out.write(HEAD_OLD + PAYLOAD)
    return storage


def crash_in_pwrite(monkeypatch, written: bytes = b"") -> None:
    """The process dies while the new head is written: part of it, or nothing, reached the
    file, and the journal is left behind."""
    real_pwrite = os.pwrite

    def torn(fd, data, offset):
        real_pwrite(fd, written, offset)
        raise OSError(errno.EIO, "killed")

    monkeypatch.setattr(folder.os, "pwrite", torn)


def read_range(storage: FolderStorage, name: str) -> bytes:
    with storage.open_range(name, 0, 3) as opened:
        return opened.stream.read()


def journal_of(storage: FolderStorage) -> Path:
    return storage.folder / folder.journal_name("b-1.tar.zst.age")


def test_a_head_of_the_same_length_is_written_in_place(storage):
    inode = (storage.folder / "b-1.tar.zst.age").stat().st_ino
    storage.rewrite_head("b-1.tar.zst.age", len(HEAD_OLD), HEAD_NEW)
    path = storage.folder / "b-1.tar.zst.age"
    assert path.read_bytes() == HEAD_NEW + PAYLOAD
    assert path.stat().st_ino == inode
    assert os.listdir(storage.folder) == ["b-1.tar.zst.age"]


def test_a_head_of_another_length_is_a_copy_under_the_same_name(storage):
    storage.rewrite_head("b-1.tar.zst.age", len(HEAD_OLD), b"longer head\n")
    assert (storage.folder / "b-1.tar.zst.age").read_bytes() == b"longer head\n" + PAYLOAD
    assert os.listdir(storage.folder) == ["b-1.tar.zst.age"]


@pytest.mark.parametrize("written", [b"", b"HEAD"])
def test_a_crash_after_the_journal_is_rolled_forward_by_the_next_open(
        storage, monkeypatch, written):
    crash_in_pwrite(monkeypatch, written)
    with pytest.raises(StorageFailure):
        storage.rewrite_head("b-1.tar.zst.age", len(HEAD_OLD), HEAD_NEW)
    monkeypatch.undo()
    assert journal_of(storage).exists()
    with storage.open("b-1.tar.zst.age") as opened:
        assert opened.stream.read() == HEAD_NEW + PAYLOAD
    assert os.listdir(storage.folder) == ["b-1.tar.zst.age"]


@pytest.mark.parametrize("reach", ["stat", "list", "prepare", "open_range", "rewrite_head"])
def test_every_way_to_the_file_finishes_an_interrupted_rewrite_first(storage, monkeypatch,
                                                                     reach):
    crash_in_pwrite(monkeypatch, b"HE")
    with pytest.raises(StorageFailure):
        storage.rewrite_head("b-1.tar.zst.age", len(HEAD_OLD), HEAD_NEW)
    monkeypatch.undo()
    actions = {
        "stat": lambda: storage.stat("b-1.tar.zst.age"),
        "list": lambda: list(storage.list()),
        "prepare": storage.prepare,
        "open_range": lambda: read_range(storage, "b-1.tar.zst.age"),
        # The same head again: what a retried rekey does.
        "rewrite_head": lambda: storage.rewrite_head("b-1.tar.zst.age", 9, HEAD_NEW),
    }
    actions[reach]()
    assert (storage.folder / "b-1.tar.zst.age").read_bytes() == HEAD_NEW + PAYLOAD
    assert not journal_of(storage).exists()


def test_a_journal_is_never_listed_nor_reaped_as_an_orphan(storage, monkeypatch):
    crash_in_pwrite(monkeypatch)
    with pytest.raises(StorageFailure):
        storage.rewrite_head("b-1.tar.zst.age", len(HEAD_OLD), HEAD_NEW)
    monkeypatch.undo()
    name = journal_of(storage).name
    assert not is_temporary_name(name) and folder.journaled_name(name) == "b-1.tar.zst.age"
    hour_ago = time.time() - 3600
    os.utime(journal_of(storage), (hour_ago, hour_ago))
    assert storage.remove_orphans(0) == []
    assert journal_of(storage).exists()
    assert [o.name for o in storage.list()] == ["b-1.tar.zst.age"]


def test_a_journal_written_by_hand_with_a_torn_head_is_finished(storage):
    """What a kill -9 between the journal and the sync leaves: the journal whole, the head
    half written."""
    path = storage.folder / "b-1.tar.zst.age"
    fd = os.open(path, os.O_RDWR)
    try:
        entry = folder._journal_entry(fd, HEAD_NEW)
    finally:
        os.close(fd)
    journal_of(storage).write_bytes(entry)
    path.write_bytes(b"HEAD" + HEAD_OLD[4:] + PAYLOAD)
    assert storage.stat("b-1.tar.zst.age").size == len(HEAD_NEW + PAYLOAD)
    assert path.read_bytes() == HEAD_NEW + PAYLOAD


def test_a_journal_of_another_file_of_that_name_is_dropped_unused(storage, monkeypatch):
    crash_in_pwrite(monkeypatch)
    with pytest.raises(StorageFailure):
        storage.rewrite_head("b-1.tar.zst.age", len(HEAD_OLD), HEAD_NEW)
    monkeypatch.undo()
    # The file went by another way than delete; a new backup of the same size took the name.
    (storage.folder / "b-1.tar.zst.age").unlink()
    other = HEAD_OLD + os.urandom(len(PAYLOAD))
    (storage.folder / "b-1.tar.zst.age").write_bytes(other)
    with storage.open("b-1.tar.zst.age") as opened:
        assert opened.stream.read() == other
    assert not journal_of(storage).exists()


def test_deleting_the_file_takes_its_journal(storage, monkeypatch):
    crash_in_pwrite(monkeypatch)
    with pytest.raises(StorageFailure):
        storage.rewrite_head("b-1.tar.zst.age", len(HEAD_OLD), HEAD_NEW)
    monkeypatch.undo()
    storage.delete("b-1.tar.zst.age")
    assert os.listdir(storage.folder) == []


def test_a_damaged_journal_stops_reads_of_its_file(storage):
    journal_of(storage).write_bytes(b"{not a journal")
    with pytest.raises(StorageFailure, match="head-journal"), storage.open("b-1.tar.zst.age"):
        pass


def test_replace_takes_the_place_of_the_file_atomically(storage):
    with storage.replace("b-1.tar.zst.age") as out:
        out.write(b"new")
        (name,) = [n for n in os.listdir(storage.folder) if n != "b-1.tar.zst.age"]
        assert is_temporary_name(name)
    assert (storage.folder / "b-1.tar.zst.age").read_bytes() == b"new"
    assert stat.S_IMODE((storage.folder / "b-1.tar.zst.age").stat().st_mode) == 0o600
