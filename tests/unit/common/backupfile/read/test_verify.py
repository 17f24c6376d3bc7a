import os
from pathlib import Path

import pytest

from common.backupfile.io.folder import stored_at
from common.backupfile.io.hashing import sha512_of_file
from common.backupfile.read.verify import HASH_MISMATCH, VerifyJob, run_verify
from common.errors import (
    BackupCorrupted,
    BackupNotFound,
    TaskCanceled,
    UnsafeArchiveMember,
    WrongPassword,
)
from tests.unit.common.backupfile.read.test_restore import (
    PASSPHRASE,
    RecordingReporter,
    backup,
    craft,
    file_member,
    flip_byte,
    folder_member,
    link_member,
    make_tree,
    manifest_lines,
)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "source")


@pytest.fixture
def encrypted(source: Path, tmp_path: Path):
    return backup(source, tmp_path / "backups", passphrase=PASSPHRASE)


def verify_job(stored, **options) -> VerifyJob:
    return VerifyJob("b-1", *stored_at(stored.path), stored.hash, **options)


def crafted_job(path: Path, **options) -> VerifyJob:
    return VerifyJob("b-1", *stored_at(path), sha512_of_file(path), **options)


def test_verify_with_password_reads_every_file(encrypted):
    outcome = run_verify(verify_job(encrypted, passphrase=PASSPHRASE), RecordingReporter())
    assert outcome.hash_ok and outcome.content_checked
    assert (outcome.files, outcome.bytes) == (encrypted.files, encrypted.source_bytes)


def test_verify_without_password_checks_only_the_stored_hash(encrypted):
    outcome = run_verify(verify_job(encrypted), RecordingReporter())
    assert outcome.hash_ok
    assert not outcome.content_checked
    assert (outcome.files, outcome.bytes) == (0, 0)


def test_verify_of_a_plain_backup_reads_the_content(source, tmp_path):
    plain = backup(source, tmp_path / "backups")
    outcome = run_verify(verify_job(plain), RecordingReporter())
    assert outcome.content_checked
    assert (outcome.files, outcome.bytes) == (plain.files, plain.source_bytes)


def test_verify_accepts_the_hash_in_lower_case(encrypted):
    job = VerifyJob("b-1", *stored_at(encrypted.path), encrypted.hash.lower())
    assert run_verify(job, RecordingReporter()).hash_ok


def test_verify_writes_nothing(encrypted, tmp_path):
    before = sorted(tmp_path.rglob("*"))
    run_verify(verify_job(encrypted, passphrase=PASSPHRASE), RecordingReporter())
    assert sorted(tmp_path.rglob("*")) == before


def test_wrong_password_is_reported_as_such(encrypted):
    with pytest.raises(WrongPassword):
        run_verify(verify_job(encrypted, passphrase="nope"), RecordingReporter())


def test_a_damaged_header_is_corruption_not_a_wrong_password(encrypted):
    # The scrypt salt sits on the first stanza line; a change there makes the key wrong.
    flip_byte(encrypted.path, len(b"age-encryption.org/v1\n-> scrypt ") + 3)
    with pytest.raises(BackupCorrupted, match="catalogue hash"):
        run_verify(verify_job(encrypted, passphrase=PASSPHRASE), RecordingReporter())


@pytest.mark.parametrize("passphrase", [PASSPHRASE, None], ids=["with-password", "hash-only"])
def test_a_flipped_byte_is_corruption(encrypted, passphrase):
    flip_byte(encrypted.path, encrypted.size // 2)
    with pytest.raises(BackupCorrupted):
        run_verify(verify_job(encrypted, passphrase=passphrase), RecordingReporter())


def test_without_password_a_flipped_byte_fails_the_hash_check(encrypted):
    flip_byte(encrypted.path, encrypted.size // 2)
    with pytest.raises(BackupCorrupted, match=HASH_MISMATCH):
        run_verify(verify_job(encrypted), RecordingReporter())


@pytest.mark.parametrize("passphrase", [PASSPHRASE, None], ids=["encrypted", "plain"])
def test_a_file_cut_in_half_is_corruption(source, tmp_path, passphrase):
    stored = backup(source, tmp_path / "backups", passphrase=passphrase)
    os.truncate(stored.path, stored.size // 2)
    with pytest.raises(BackupCorrupted):
        run_verify(verify_job(stored, passphrase=passphrase), RecordingReporter())


def test_a_catalogue_hash_that_differs_is_corruption(encrypted):
    job = VerifyJob("b-1", *stored_at(encrypted.path), "SHA-512:AB:CD", passphrase=PASSPHRASE)
    with pytest.raises(BackupCorrupted, match=HASH_MISMATCH):
        run_verify(job, RecordingReporter())


def test_a_manifest_mismatch_is_corruption_even_when_the_hash_matches(tmp_path):
    members = [folder_member("data"), file_member("data/f", b"real bytes")]
    lines = manifest_lines(members)
    lines[2]["size"] = 3
    path = craft(tmp_path / "b-1.tar.zst.age", members, manifest=lines)
    with pytest.raises(BackupCorrupted, match="data/f does not match"):
        run_verify(crafted_job(path, passphrase=PASSPHRASE), RecordingReporter())


def test_an_unsafe_member_fails_verification(tmp_path):
    path = craft(tmp_path / "b-1.tar.zst", [link_member("link", "/etc")], passphrase=None)
    with pytest.raises(UnsafeArchiveMember):
        run_verify(crafted_job(path), RecordingReporter())


def test_a_missing_file_is_backup_not_found(tmp_path):
    job = VerifyJob("b-1", *stored_at(tmp_path / "gone.tar.zst"), "SHA-512:00")
    with pytest.raises(BackupNotFound):
        run_verify(job, RecordingReporter())


def test_stop_request_cancels_verification(encrypted):
    with pytest.raises(TaskCanceled):
        run_verify(verify_job(encrypted, passphrase=PASSPHRASE), RecordingReporter(0))
