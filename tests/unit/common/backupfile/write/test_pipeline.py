import errno
import hashlib
import os
import random
import subprocess
import threading
import time
from pathlib import Path

import pyrage
import pytest

from common.backupfile.format.age import AgeReader, PassphraseKey, generate_x25519_identity
from common.backupfile.format.manifest import MANIFEST_NAME
from common.backupfile.io import folder as folder_io
from common.backupfile.io import handoff, progress
from common.backupfile.io.folder import FolderStorage
from common.backupfile.io.hashing import HashingWriter, format_sha512, sha512_of_file
from common.backupfile.io.storage import backup_file_name
from common.backupfile.write import readahead
from common.backupfile.write.pipeline import BackupJob, run_backup
from common.backupfile.write.sources import Source
from common.errors import FileSkipped, InsufficientStorage, SourceUnavailable, TaskCanceled
from tests.tools import require_tool
from tests.unit.common.backupfile.stored import backup_into
from tests.unit.common.backupfile.write.test_archive import sample_tree, tree_contents

PASSPHRASE = "correct horse battery staple"


class RecordingReporter:
    def __init__(self, stop_after_checks: int | None = None) -> None:
        self.percents: list[int] = []
        self.warnings: list = []
        self.stop_checks = 0
        self.stop_after_checks = stop_after_checks

    def progress(self, percent: int) -> None:
        self.percents.append(percent)

    def warning(self, error) -> None:
        self.warnings.append(error)

    def should_stop(self) -> bool:
        self.stop_checks += 1
        return self.stop_after_checks is not None and self.stop_checks > self.stop_after_checks


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = sample_tree(tmp_path / "data")
    (root / "big-text.log").write_text(
        "".join(f"line {i} level=info msg=request served\n" for i in range(150_000)))
    (root / "big-random.bin").write_bytes(random.randbytes(3 << 20))
    return root


@pytest.fixture
def backup_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "backups"
    folder.mkdir()
    return folder


def job_for(source: Path, backup_dir: Path, **options) -> BackupJob:
    return BackupJob("b-1", (Source("etc", source),), FolderStorage(backup_dir), work_factor=10,
                     **options)


def untar_zstd(compressed: bytes, out: Path) -> Path:
    zstd, tar = require_tool("zstd"), require_tool("tar")
    plain = subprocess.run([zstd, "-d", "-c"], input=compressed, check=True,
                           capture_output=True).stdout
    out.mkdir()
    subprocess.run([tar, "-x", "-C", out], input=plain, check=True)
    return out


def test_plain_backup_round_trips_through_zstd_and_gnu_tar(source, backup_dir, tmp_path):
    outcome = backup_into(job_for(source, backup_dir), RecordingReporter())
    assert outcome.path == backup_dir / "b-1.tar.zst"
    out = untar_zstd(outcome.path.read_bytes(), tmp_path / "out")
    assert tree_contents(out / "etc") == tree_contents(source)
    assert (out / MANIFEST_NAME).is_file()


def test_outcome_hash_and_size_describe_the_stored_file(source, backup_dir) -> None:
    outcome = backup_into(job_for(source, backup_dir), RecordingReporter())
    stored = outcome.path.read_bytes()
    assert outcome.hash == format_sha512(hashlib.sha512(stored).digest())
    assert outcome.size == len(stored)


def test_outcome_counts_files_and_source_bytes(source, backup_dir) -> None:
    outcome = backup_into(job_for(source, backup_dir), RecordingReporter())
    files = [p for p in source.rglob("*") if p.is_file() and not p.is_symlink()]
    assert outcome.files == len(files)
    assert outcome.source_bytes == sum(p.stat().st_size for p in files)
    assert outcome.generated_on > 1_600_000_000_000


def test_passphrase_backup_decrypts_to_the_same_tree(source, backup_dir, tmp_path) -> None:
    outcome = backup_into(job_for(source, backup_dir, passphrase=PASSPHRASE),
                         RecordingReporter())
    assert outcome.path.name == "b-1.tar.zst.age"
    with open(outcome.path, "rb") as sealed:
        compressed = AgeReader(sealed, passphrase=PASSPHRASE).readall()
    out = untar_zstd(compressed, tmp_path / "out")
    assert tree_contents(out / "etc") == tree_contents(source)


def test_passphrase_backup_opens_with_another_age_implementation(source, backup_dir) -> None:
    outcome = backup_into(job_for(source, backup_dir, passphrase=PASSPHRASE),
                         RecordingReporter())
    compressed = pyrage.passphrase.decrypt(outcome.path.read_bytes(), PASSPHRASE)
    with open(outcome.path, "rb") as sealed:
        assert compressed == AgeReader(sealed, passphrase=PASSPHRASE).readall()


def test_recipient_backup_opens_with_the_age_command(source, backup_dir, tmp_path) -> None:
    age = require_tool("age")
    identity, recipient = generate_x25519_identity()
    (tmp_path / "key.txt").write_text(identity + "\n")
    outcome = backup_into(job_for(source, backup_dir, recipients=(recipient,)),
                         RecordingReporter())
    compressed = subprocess.run([age, "-d", "-i", tmp_path / "key.txt", outcome.path],
                                check=True, capture_output=True).stdout
    out = untar_zstd(compressed, tmp_path / "out")
    assert tree_contents(out / "etc") == tree_contents(source)


def test_progress_rises_and_stays_below_100(source, backup_dir) -> None:
    reporter = RecordingReporter()
    run_backup(job_for(source, backup_dir), reporter)
    assert reporter.percents
    assert reporter.percents == sorted(set(reporter.percents))
    assert all(0 < percent <= 99 for percent in reporter.percents)


def test_warnings_reach_the_reporter(source, backup_dir) -> None:
    os.mkfifo(source / "pipe")
    reporter = RecordingReporter()
    run_backup(job_for(source, backup_dir), reporter)
    assert [(type(w), w.args_list) for w in reporter.warnings] == [
        (FileSkipped, ["etc/pipe", "fifo"])]


def test_backup_folder_inside_a_source_is_not_backed_up(source, tmp_path) -> None:
    inside = source / "backups"
    inside.mkdir()
    (inside / "older.tar.zst").write_bytes(b"old backup")
    outcome = backup_into(job_for(source, inside), RecordingReporter())
    out = untar_zstd(outcome.path.read_bytes(), tmp_path / "out")
    assert not (out / "etc" / "backups").exists()


def test_stop_before_the_first_file_cancels_and_leaves_nothing(source, backup_dir) -> None:
    with pytest.raises(TaskCanceled):
        run_backup(job_for(source, backup_dir), RecordingReporter(stop_after_checks=0))
    assert os.listdir(backup_dir) == []


def test_stop_midway_cancels_and_leaves_nothing(source, backup_dir, monkeypatch) -> None:
    monkeypatch.setattr(progress, "_STOP_CHECK_INTERVAL", 0)
    with pytest.raises(TaskCanceled):
        run_backup(job_for(source, backup_dir, passphrase=PASSPHRASE),
                   RecordingReporter(stop_after_checks=8))
    assert os.listdir(backup_dir) == []
    assert "backup-writer" not in [thread.name for thread in threading.enumerate()]


def test_the_first_files_are_asked_of_the_disk_while_the_key_is_derived(
    source, backup_dir, tmp_path, monkeypatch
) -> None:
    asked = threading.Event()
    monkeypatch.setattr(readahead, "_ADVISE", lambda _path: asked.set())
    real_derive = PassphraseKey.derive

    def derive_once_files_are_asked(passphrase, work_factor):
        # Waits for the hint, as the derivation's second of CPU would; no hint, no key.
        if not asked.wait(10):
            raise AssertionError("no file was asked for while the key was derived")
        return real_derive(passphrase, work_factor)

    monkeypatch.setattr(PassphraseKey, "derive", derive_once_files_are_asked)
    outcome = run_backup(job_for(source, backup_dir, passphrase=PASSPHRASE), RecordingReporter())
    with open(backup_dir / outcome.file_name, "rb") as sealed:
        compressed = AgeReader(sealed, passphrase=PASSPHRASE).readall()
    assert tree_contents(untar_zstd(compressed, tmp_path / "out") / "etc") == tree_contents(source)


def test_a_cancel_while_the_key_is_derived_leaves_no_thread_and_no_file(
    source, backup_dir, monkeypatch
) -> None:
    monkeypatch.setattr(progress, "_STOP_CHECK_INTERVAL", 0)
    real_derive = PassphraseKey.derive

    def slow_derive(passphrase, work_factor):
        time.sleep(1)
        return real_derive(passphrase, work_factor)

    monkeypatch.setattr(PassphraseKey, "derive", slow_derive)
    with pytest.raises(TaskCanceled):
        run_backup(job_for(source, backup_dir, passphrase=PASSPHRASE),
                   RecordingReporter(stop_after_checks=0))
    # The derivation was waited for, so that its memory is gone before another task's.
    assert _backup_threads(0) == []
    assert os.listdir(backup_dir) == []


def _backup_threads(seconds: float = 2.0) -> list[str]:
    """The pipeline's threads still alive after waiting at most `seconds` for them to end."""
    deadline = time.monotonic() + seconds
    while True:
        left = [t.name for t in threading.enumerate() if t.name.startswith("backup-")]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


def test_an_interrupt_while_a_stage_starts_leaves_no_thread_and_no_file(
    source, backup_dir, monkeypatch
) -> None:
    real_start = threading.Thread.start

    def interrupt_the_writer(thread: threading.Thread) -> None:
        real_start(thread)
        if thread.name == "backup-writer":  # SIGTERM landing in start()'s wait, after scrypt
            raise SystemExit(-15)

    monkeypatch.setattr(threading.Thread, "start", interrupt_the_writer)
    with pytest.raises(SystemExit):
        run_backup(job_for(source, backup_dir, passphrase=PASSPHRASE), RecordingReporter())
    monkeypatch.undo()
    assert _backup_threads() == []
    assert os.listdir(backup_dir) == []


def test_a_cancel_ends_a_backup_whose_disk_is_stuck(source, backup_dir, monkeypatch) -> None:
    (source / "more-random.bin").write_bytes(random.randbytes(16 << 20))  # past the buffers
    monkeypatch.setattr(handoff, "STOP_SECONDS", 0.2)
    real_write, blocked, released = os.write, threading.Event(), threading.Event()

    def stuck_on_the_backup(fd: int, data) -> int:
        if not os.readlink(f"/proc/self/fd/{fd}").endswith(".part"):
            return real_write(fd, data)
        blocked.set()
        released.wait(30)
        raise OSError(errno.EIO, "the disk came back too late")

    class StopOnceStuck(RecordingReporter):
        def should_stop(self) -> bool:  # a cancel, asked for once the disk hangs
            return blocked.is_set()

    monkeypatch.setattr(folder_io.os, "write", stuck_on_the_backup)
    with pytest.raises(TaskCanceled):
        run_backup(job_for(source, backup_dir), StopOnceStuck())
    released.set()
    assert _backup_threads() == []
    assert os.listdir(backup_dir) == []


def test_full_disk_fails_with_insufficient_storage_and_leaves_nothing(
    source, backup_dir, monkeypatch
) -> None:
    real_write, written = os.write, []

    def write_until_full(fd: int, data) -> int:
        if sum(written) > 1 << 20:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(folder_io.os, "write", write_until_full)
    with pytest.raises(InsufficientStorage):
        run_backup(job_for(source, backup_dir), RecordingReporter())
    assert os.listdir(backup_dir) == []


def test_missing_source_fails_before_any_file_is_made(backup_dir, tmp_path) -> None:
    with pytest.raises(SourceUnavailable):
        run_backup(job_for(tmp_path / "absent", backup_dir), RecordingReporter())
    assert os.listdir(backup_dir) == []


def test_format_sha512_writes_upper_case_pairs_joined_by_colons() -> None:
    text = format_sha512(bytes(range(64)))
    assert text.startswith("SHA-512:00:01:02:") and text.endswith(":3D:3E:3F")
    assert len(text.split(":")) == 65


def test_hashing_writer_passes_bytes_through_and_hashes_them(tmp_path: Path) -> None:
    path = tmp_path / "out"
    with open(path, "wb") as sink:
        writer = HashingWriter(sink)
        writer.write(b"abc")
        writer.write(bytearray(b"def"))
    assert path.read_bytes() == b"abcdef" and writer.size == 6
    assert writer.formatted() == sha512_of_file(path)
    assert writer.digest() == hashlib.sha512(b"abcdef").digest()


def test_backup_file_name_tells_encrypted_from_plain() -> None:
    assert backup_file_name("abc", encrypted=True) == "abc.tar.zst.age"
    assert backup_file_name("abc", encrypted=False) == "abc.tar.zst"


@pytest.mark.parametrize("unsafe", ["../x", "a/b", ".hidden", ""])
def test_backup_file_name_refuses_ids_that_leave_the_folder(unsafe: str) -> None:
    with pytest.raises(ValueError):
        backup_file_name(unsafe, encrypted=False)


def test_job_refuses_a_passphrase_together_with_recipients(tmp_path: Path) -> None:
    _, recipient = generate_x25519_identity()
    with pytest.raises(ValueError):
        BackupJob("b", (), FolderStorage(tmp_path), passphrase="x", recipients=(recipient,))
