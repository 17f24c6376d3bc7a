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
