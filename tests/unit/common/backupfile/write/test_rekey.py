import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from common.backupfile.format.age import AGE_MAGIC, generate_x25519_identity
from common.backupfile.io import folder as folder_io
from common.backupfile.io.folder import FolderStorage
from common.backupfile.io.hashing import format_sha512
from common.backupfile.read.verify import VerifyJob, run_verify
from common.backupfile.write.pipeline import BackupJob, run_backup
from common.backupfile.write.rekey import RekeyJob, run_rekey
from common.backupfile.write.sources import Source
from common.errors import (
    BackupCorrupted,
    BackupNotEncrypted,
    StorageFailure,
    TaskCanceled,
    WrongPassword,
)
from tests.tools import age_decrypts, require_tool
from tests.unit.common.backupfile.read.test_restore import RecordingReporter, make_tree

OLD, NEW = "old passphrase", "new passphrase"
WORK_FACTOR = 10
NAME = "b-1.tar.zst.age"


class CopyingStorage(FolderStorage):
    """A folder that cannot rewrite a head in place, as an object store cannot."""

    def rewrites_head_in_place(self, old_head_length: int, new_head_length: int) -> bool:
        return False


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = make_tree(tmp_path / "source")
    # Several MiB that zstd cannot shrink: both hashes take many reads.
    (root / "random.bin").write_bytes(os.urandom(3 << 20))
    return root


@pytest.fixture(params=[FolderStorage, CopyingStorage], ids=["in place", "copy"])
def storage(request, tmp_path: Path) -> FolderStorage:
    storage = request.param(tmp_path / "backups")
    storage.prepare()
    return storage


def stored_backup(source: Path, storage: FolderStorage, **keys):
    job = BackupJob("b-1", (Source("data", source),), storage, work_factor=WORK_FACTOR, **keys)
    return run_backup(job, RecordingReporter())


def rekey_job(storage: FolderStorage, expected_hash: str, **keys) -> RekeyJob:
    return RekeyJob("b-1", storage, NAME, expected_hash, work_factor=WORK_FACTOR, **keys)


def path_of(storage: FolderStorage) -> Path:
    return storage.folder / NAME


def sha512_of(path: Path) -> str:
    return format_sha512(hashlib.sha512(path.read_bytes()).digest())


def verified(storage: FolderStorage, expected_hash: str, **keys):
    return run_verify(VerifyJob("b-1", storage, NAME, expected_hash, **keys),
                      RecordingReporter())


def payload_of(path: Path) -> bytes:
    """The bytes after the header: the nonce and every chunk, which a rekey leaves as they
    are."""
    data = path.read_bytes()
    return data[data.index(b"\n---") + len(b"\n--- ") + 43 + 1:]


def test_passphrase_to_passphrase_opens_with_the_new_one_only(source, storage):
    before = stored_backup(source, storage, passphrase=OLD)
    payload = payload_of(path_of(storage))
    outcome = run_rekey(rekey_job(storage, before.hash, passphrase=OLD, new_passphrase=NEW),
                        RecordingReporter())
    assert not outcome.finished_earlier
    assert outcome.hash == sha512_of(path_of(storage)) != before.hash
    assert outcome.size == path_of(storage).stat().st_size == before.size
    assert payload_of(path_of(storage)) == payload
    checked = verified(storage, outcome.hash, passphrase=NEW)
    assert checked.content_checked and checked.files == before.files
    with pytest.raises(WrongPassword):
        verified(storage, outcome.hash, passphrase=OLD)


def test_passphrase_to_recipients(source, storage):
    identity, recipient = generate_x25519_identity()
    before = stored_backup(source, storage, passphrase=OLD)
    outcome = run_rekey(rekey_job(storage, before.hash, passphrase=OLD,
                                  new_recipients=(recipient,)), RecordingReporter())
    assert outcome.hash == sha512_of(path_of(storage))
    assert outcome.size == path_of(storage).stat().st_size != before.size
    assert verified(storage, outcome.hash, identities=(identity,)).content_checked
    with pytest.raises(WrongPassword):
        verified(storage, outcome.hash, passphrase=OLD)
    assert os.listdir(storage.folder) == [NAME]


def test_recipients_to_passphrase(source, storage):
    identity, recipient = generate_x25519_identity()
    other_identity, other = generate_x25519_identity()
    before = stored_backup(source, storage, recipients=(recipient, other))
    outcome = run_rekey(rekey_job(storage, before.hash, identities=(identity,),
                                  new_passphrase=NEW), RecordingReporter())
    assert outcome.hash == sha512_of(path_of(storage))
    assert verified(storage, outcome.hash, passphrase=NEW).content_checked
    for old_key in (identity, other_identity):
        with pytest.raises(WrongPassword):
            verified(storage, outcome.hash, identities=(old_key,))


def test_a_wrong_old_key_is_wrong_password_and_changes_nothing(source, storage):
    before = stored_backup(source, storage, passphrase=OLD)
    with pytest.raises(WrongPassword):
        run_rekey(rekey_job(storage, before.hash, passphrase="not it", new_passphrase=NEW),
                  RecordingReporter())
    assert sha512_of(path_of(storage)) == before.hash


def test_a_wrong_identity_is_wrong_password(source, storage):
    _, recipient = generate_x25519_identity()
    stranger, _ = generate_x25519_identity()
    before = stored_backup(source, storage, recipients=(recipient,))
    _, new_recipient = generate_x25519_identity()
    with pytest.raises(WrongPassword):
        run_rekey(rekey_job(storage, before.hash, identities=(stranger,),
                            new_recipients=(new_recipient,)), RecordingReporter())
    assert sha512_of(path_of(storage)) == before.hash


@pytest.mark.parametrize("where", ["payload", "last byte"])
def test_a_damaged_byte_is_backup_corrupted_and_nothing_is_written(source, storage, where):
    before = stored_backup(source, storage, passphrase=OLD)
    data = bytearray(path_of(storage).read_bytes())
    data[len(data) // 2 if where == "payload" else -1] ^= 0x01
    path_of(storage).write_bytes(bytes(data))
    with pytest.raises(BackupCorrupted):
        run_rekey(rekey_job(storage, before.hash, passphrase=OLD, new_passphrase=NEW),
                  RecordingReporter())
    assert path_of(storage).read_bytes() == bytes(data)
    assert os.listdir(storage.folder) == [NAME]


def test_a_damaged_header_is_backup_corrupted(source, storage):
    before = stored_backup(source, storage, passphrase=OLD)
    data = bytearray(path_of(storage).read_bytes())
    data[len(AGE_MAGIC) + 12] ^= 0x01  # inside the scrypt salt: the key no longer opens it
    path_of(storage).write_bytes(bytes(data))
    with pytest.raises(BackupCorrupted):
        run_rekey(rekey_job(storage, before.hash, passphrase=OLD, new_passphrase=NEW),
                  RecordingReporter())
    assert path_of(storage).read_bytes() == bytes(data)


def test_a_second_run_finds_the_rekey_done_and_takes_the_hash(source, storage):
    before = stored_backup(source, storage, passphrase=OLD)
    job = rekey_job(storage, before.hash, passphrase=OLD, new_passphrase=NEW)
    first = run_rekey(job, RecordingReporter())
    stored = path_of(storage).read_bytes()
    again = run_rekey(job, RecordingReporter())
    assert again.finished_earlier
    assert (again.hash, again.size) == (first.hash, first.size)
    assert path_of(storage).read_bytes() == stored


def test_a_second_run_to_recipients_finds_the_rekey_done(source, storage):
    _, recipient = generate_x25519_identity()
    before = stored_backup(source, storage, passphrase=OLD)
    job = rekey_job(storage, before.hash, passphrase=OLD, new_recipients=(recipient,))
    first = run_rekey(job, RecordingReporter())
    again = run_rekey(job, RecordingReporter())
    assert again.finished_earlier and again.hash == first.hash


def test_a_wrong_key_on_a_file_already_for_the_new_recipients_shape_is_wrong_password(
        source, storage):
    """One X25519 stanza before and after: only a changed hash says that a rekey happened."""
    _, recipient = generate_x25519_identity()
    stranger, new_recipient = generate_x25519_identity()
    before = stored_backup(source, storage, recipients=(recipient,))
    with pytest.raises(WrongPassword):
        run_rekey(rekey_job(storage, before.hash, identities=(stranger,),
                            new_recipients=(new_recipient,)), RecordingReporter())


def test_a_plain_backup_is_refused(source, storage):
    stored_backup(source, storage)
    (storage.folder / "b-1.tar.zst").rename(path_of(storage))
    with pytest.raises(BackupNotEncrypted):
        run_rekey(rekey_job(storage, "SHA-512:00", passphrase=OLD, new_passphrase=NEW),
                  RecordingReporter())


@pytest.mark.parametrize("keys", [
    {"passphrase": OLD},
    {"passphrase": OLD, "new_passphrase": NEW, "new_recipients": (generate_x25519_identity()[1],)},
    {"passphrase": OLD, "new_recipients": ("age1notarecipient",)},
    {"new_passphrase": NEW},
    {"passphrase": OLD, "new_passphrase": ""},
    {"passphrase": OLD, "new_passphrase": NEW, "work_factor": 23},
])
def test_the_keys_are_checked_before_anything_is_read(tmp_path, keys):
    with pytest.raises(ValueError):
        RekeyJob("b-1", FolderStorage(tmp_path), NAME, "SHA-512:00", **keys)


def test_a_crash_while_the_head_is_written_is_finished_by_the_next_read(
        source, monkeypatch, tmp_path):
    storage = FolderStorage(tmp_path / "backups")
    storage.prepare()
    before = stored_backup(source, storage, passphrase=OLD)

    def killed(fd, data, offset):
        os.write(fd, data[:5])
        raise OSError(5, "killed")

    monkeypatch.setattr(folder_io.os, "pwrite", killed)
    job = rekey_job(storage, before.hash, passphrase=OLD, new_passphrase=NEW)
    with pytest.raises(StorageFailure):
        run_rekey(job, RecordingReporter())
    monkeypatch.undo()
    again = run_rekey(job, RecordingReporter())
    assert again.finished_earlier and again.hash == sha512_of(path_of(storage))
    assert verified(storage, again.hash, passphrase=NEW).content_checked


def test_progress_rises_and_a_cancel_stops_before_anything_is_written(source, storage):
    before = stored_backup(source, storage, passphrase=OLD)
    with pytest.raises(TaskCanceled):
        run_rekey(rekey_job(storage, before.hash, passphrase=OLD, new_passphrase=NEW),
                  RecordingReporter(stop_after_checks=0))
    assert sha512_of(path_of(storage)) == before.hash
    assert os.listdir(storage.folder) == [NAME]
    reporter = RecordingReporter()
    run_rekey(rekey_job(storage, before.hash, passphrase=OLD, new_passphrase=NEW), reporter)
    assert reporter.percents == sorted(reporter.percents)
    assert all(0 < percent < 100 for percent in reporter.percents)


def test_the_age_command_opens_the_result_with_the_new_passphrase_only(source, tmp_path):
    storage = FolderStorage(tmp_path / "backups")
    storage.prepare()
    before = stored_backup(source, storage, passphrase=OLD)
    outcome = run_rekey(rekey_job(storage, before.hash, passphrase=OLD, new_passphrase=NEW),
                        RecordingReporter())
    assert outcome.hash == sha512_of(path_of(storage))
    opened = age_decrypts(path_of(storage), NEW, tmp_path / "new.tar.zst")
    assert opened.returncode == 0, opened.stdout + opened.stderr
    plain = subprocess.run([require_tool("zstd"), "-t", str(tmp_path / "new.tar.zst")],
                           capture_output=True)
    assert plain.returncode == 0
    refused = age_decrypts(path_of(storage), OLD, tmp_path / "old.tar.zst")
    assert refused.returncode != 0
    assert "incorrect passphrase" in (refused.stdout + refused.stderr).lower()
