import errno
import hashlib
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import blake3
import pytest
import zstandard

from common.backupfile.format import members
from common.backupfile.format.age import encrypt_bytes, generate_x25519_identity
from common.backupfile.format.manifest import MANIFEST_NAME
from common.backupfile.io import progress
from common.backupfile.io.folder import FolderStorage, stored_at
from common.backupfile.read import restore
from common.backupfile.read.restore import RestoreJob, run_restore
from common.backupfile.write.pipeline import BackupJob
from common.backupfile.write.sources import Source
from common.errors import (
    BackupCorrupted,
    InsufficientStorage,
    StorageFailure,
    TaskCanceled,
    UnsafeArchiveMember,
    WrongPassword,
)
from tests.unit.common.backupfile.stored import backup_into

PASSPHRASE = "correct horse battery staple"
UNICODE_NAME = "naïve-😀-Ωmega.txt"
MTIME = 1_600_000_000


class RecordingReporter:
    def __init__(self, stop_after_checks: int | None = None) -> None:
        self.percents: list[int] = []
        self.stop_checks = 0
        self.stop_after_checks = stop_after_checks

    def progress(self, percent: int) -> None:
        self.percents.append(percent)

    def warning(self, error) -> None:
        raise AssertionError(f"unexpected warning {error}")

    def should_stop(self) -> bool:
        self.stop_checks += 1
        return self.stop_after_checks is not None and self.stop_checks > self.stop_after_checks


def make_tree(root: Path) -> Path:
    """Text, random bytes, an empty file and folder, a unicode name, symlinks, odd modes."""
    (root / "conf" / "nested").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "conf" / "app.conf").write_text("key = value\n" * 5000)
    (root / "conf" / "nested" / "random.bin").write_bytes(os.urandom(3 << 20))
    (root / "empty").write_bytes(b"")
    (root / UNICODE_NAME).write_text("unicode ✓\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "conf" / "nested" / "up").symlink_to("../app.conf")
    (root / "dangling").symlink_to("missing/file")
    os.chmod(root / "run.sh", 0o750)
    os.chmod(root / "conf" / "app.conf", 0o600)
    for number, path in enumerate(p for p in root.rglob("*") if not p.is_symlink()):
        os.utime(path, (MTIME + number, MTIME + number))
    return root


def snapshot(root: Path) -> dict[str, tuple]:
    """Relative path to (kind, content or target, permission bits, mtime of files)."""
    found: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        st, name = path.lstat(), path.relative_to(root).as_posix()
        if stat.S_ISLNK(st.st_mode):
            found[name] = ("symlink", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            found[name] = ("dir", stat.S_IMODE(st.st_mode))
        else:
            found[name] = ("file", path.read_bytes(), stat.S_IMODE(st.st_mode),
                           int(st.st_mtime))
    return found


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "source")


@pytest.fixture
def restore_root(tmp_path: Path) -> Path:
    root = tmp_path / "outer" / "restores"
    root.mkdir(parents=True)
    return root


def backup(source: Path, folder: Path, **options):
    folder.mkdir(exist_ok=True)
    job = BackupJob("b-1", (Source("data", source),), FolderStorage(folder), work_factor=10,
                    **options)
    return backup_into(job, RecordingReporter())


@pytest.fixture
def encrypted(source: Path, tmp_path: Path):
    return backup(source, tmp_path / "backups", passphrase=PASSPHRASE)


def restore_job(path: Path, root: Path, **options) -> RestoreJob:
    options.setdefault("passphrase", PASSPHRASE)
    return RestoreJob("b-1", *stored_at(path), root, **options)


# --- hand-made archives ---------------------------------------------------------------------

def file_member(name: str, data: bytes = b"content", mode: int = 0o644):
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, MTIME
    return info, data


def folder_member(name: str, mode: int = 0o755):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, MTIME
    return info, None


def link_member(name: str, target: str, kind: bytes = tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mtime = kind, target, MTIME
    return info, None


def special_member(name: str, kind: bytes):
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = kind, 1, 3
    return info, None


def manifest_lines(members, file_hash: str = "sha256") -> list[dict]:
    """Version 1 (SHA-256, as backups were written before) unless another file hash is named."""
    header = {"format": "h4backup-manifest", "version": 1, "backupId": "b-1",
              "createdAt": MTIME * 1000, "sources": ["data"]}
    if file_hash != "sha256":
        header.update(version=2, fileHash=file_hash)
    lines: list[dict] = [header]
    hasher = {"sha256": hashlib.sha256, "blake3": blake3.blake3}[file_hash]
    for info, data in members:
        kind = {tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink"}.get(info.type, "file")
        line = {"path": info.name, "type": kind, "size": info.size, "mode": info.mode,
                "mtime": info.mtime}
        if kind == "file":
            line[file_hash] = hasher(data or b"").hexdigest()
        if kind == "symlink":
            line["target"] = info.linkname
        lines.append(line)
    return lines


def craft(path: Path, members, passphrase: str | None = PASSPHRASE, manifest=None,
          pax_headers=None) -> Path:
    """A backup file of the given members, ending with a manifest that lists them (or manifest;
    False for none), compressed and, with a passphrase, encrypted."""
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers=pax_headers) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
        lines = manifest_lines(members) if manifest is None else manifest
        if lines is not False:
            body = "".join(json.dumps(line) + "\n" for line in lines).encode()
            tar.addfile(file_member(MANIFEST_NAME, body)[0], io.BytesIO(body))
    data = zstandard.ZstdCompressor(write_checksum=True).compress(tar_bytes.getvalue())
    if passphrase is not None:
        data = encrypt_bytes(data, passphrase, work_factor=10)
    path.write_bytes(data)
    return path


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def leftovers(root: Path) -> list[str]:
    return sorted(os.listdir(root))


# --- a faithful restore ---------------------------------------------------------------------

def test_restore_reproduces_every_entry_of_the_source(source, encrypted, restore_root):
    outcome = run_restore(restore_job(encrypted.path, restore_root), RecordingReporter())
    assert snapshot(outcome.path / "data") == snapshot(source)
    assert (outcome.files, outcome.bytes) == (encrypted.files, encrypted.source_bytes)


def test_restore_goes_into_a_new_folder_named_after_the_backup(encrypted, restore_root):
    outcome = run_restore(restore_job(encrypted.path, restore_root), RecordingReporter())
    assert outcome.path.parent == restore_root
    assert outcome.path.name.startswith("b-1-")
    assert leftovers(restore_root) == [outcome.path.name]


def test_restore_of_a_plain_backup_needs_no_password(source, tmp_path, restore_root):
    plain = backup(source, tmp_path / "backups")
    outcome = run_restore(restore_job(plain.path, restore_root, passphrase=None,
                                      target_name="plain"), RecordingReporter())
    assert snapshot(outcome.path / "data") == snapshot(source)


def test_restore_opens_a_backup_encrypted_to_a_recipient(source, tmp_path, restore_root):
    identity, recipient = generate_x25519_identity()
    stored = backup(source, tmp_path / "backups", recipients=(recipient,))
    job = restore_job(stored.path, restore_root, passphrase=None, identities=(identity,))
    outcome = run_restore(job, RecordingReporter())
    assert snapshot(outcome.path / "data") == snapshot(source)


def test_restore_strips_setuid_and_applies_read_only_folder_modes(tmp_path, restore_root):
    members = [folder_member("data", 0o555), file_member("data/tool", b"x", 0o4755)]
    path = craft(tmp_path / "b-1.tar.zst.age", members)
    outcome = run_restore(restore_job(path, restore_root), RecordingReporter())
    assert stat.S_IMODE((outcome.path / "data" / "tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((outcome.path / "data").stat().st_mode) == 0o555
    assert (outcome.path / "data").stat().st_mtime == MTIME


def test_progress_rises_below_100(encrypted, restore_root):
    reporter = RecordingReporter()
    run_restore(restore_job(encrypted.path, restore_root), reporter)
    assert reporter.percents == sorted(set(reporter.percents))
    assert reporter.percents and reporter.percents[-1] < 100


def test_restore_refuses_an_existing_folder(encrypted, restore_root):
    (restore_root / "taken").mkdir()
    with pytest.raises(StorageFailure, match="already exists"):
        run_restore(restore_job(encrypted.path, restore_root, target_name="taken"),
                    RecordingReporter())
    assert leftovers(restore_root) == ["taken"]


def test_unsafe_target_names_are_refused():
    for name in ("..", "a/b", ".hidden", ""):
        with pytest.raises(ValueError):
            RestoreJob("b-1", *stored_at("x"), Path("root"), target_name=name)


# --- failures leave nothing behind ----------------------------------------------------------

def test_wrong_password_is_reported_and_leaves_nothing(encrypted, restore_root):
    with pytest.raises(WrongPassword):
        run_restore(restore_job(encrypted.path, restore_root, passphrase="nope"),
                    RecordingReporter())
    assert leftovers(restore_root) == []


def test_missing_password_for_an_encrypted_backup_is_a_wrong_password(encrypted, restore_root):
    with pytest.raises(WrongPassword):
        run_restore(restore_job(encrypted.path, restore_root, passphrase=None),
                    RecordingReporter())
    assert leftovers(restore_root) == []


@pytest.mark.parametrize("passphrase", [PASSPHRASE, None], ids=["encrypted", "plain"])
def test_a_flipped_byte_is_corruption_and_leaves_nothing(source, tmp_path, restore_root,
                                                         passphrase):
    stored = backup(source, tmp_path / "backups", passphrase=passphrase)
    flip_byte(stored.path, stored.size // 2)
    with pytest.raises(BackupCorrupted):
        run_restore(restore_job(stored.path, restore_root, passphrase=passphrase),
                    RecordingReporter())
    assert leftovers(restore_root) == []


@pytest.mark.parametrize("passphrase", [PASSPHRASE, None], ids=["encrypted", "plain"])
def test_a_file_cut_in_half_is_corruption_and_leaves_nothing(source, tmp_path, restore_root,
                                                            passphrase):
    stored = backup(source, tmp_path / "backups", passphrase=passphrase)
    os.truncate(stored.path, stored.size // 2)
    with pytest.raises(BackupCorrupted):
        run_restore(restore_job(stored.path, restore_root, passphrase=passphrase),
                    RecordingReporter())
    assert leftovers(restore_root) == []


def test_a_catalogue_hash_that_differs_is_corruption(encrypted, restore_root):
    job = restore_job(encrypted.path, restore_root, expected_hash="SHA-512:00")
    with pytest.raises(BackupCorrupted, match="catalogue hash"):
        run_restore(job, RecordingReporter())
    assert leftovers(restore_root) == []


def test_stop_request_cancels_and_removes_the_staging_folder(encrypted, restore_root):
    with pytest.raises(TaskCanceled):
        run_restore(restore_job(encrypted.path, restore_root), RecordingReporter(0))
    assert leftovers(restore_root) == []


class StopOnceFilesAreWritten(RecordingReporter):
    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def should_stop(self) -> bool:
        return any(path.is_file() for path in self.root.rglob("*"))


def test_stop_request_in_the_middle_removes_what_was_written(encrypted, restore_root,
                                                             monkeypatch):
    monkeypatch.setattr(progress, "_STOP_CHECK_INTERVAL", 0)
    with pytest.raises(TaskCanceled):
        run_restore(restore_job(encrypted.path, restore_root),
                    StopOnceFilesAreWritten(restore_root))
    assert leftovers(restore_root) == []


def test_full_disk_is_insufficient_storage_and_leaves_nothing(encrypted, restore_root,
                                                               monkeypatch):
    def full(_fd, _block):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(restore, "_write_all", full)
    with pytest.raises(InsufficientStorage):
        run_restore(restore_job(encrypted.path, restore_root), RecordingReporter())
    assert leftovers(restore_root) == []


def test_failure_after_folder_modes_were_set_still_removes_everything(tmp_path, restore_root,
                                                                       monkeypatch):
    members = [folder_member("data", 0o500), folder_member("data/locked", 0o000),
               file_member("data/locked/f")]
    path = craft(tmp_path / "b-1.tar.zst.age", members)

    def cross_device(_staging, _final):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(restore, "_publish", cross_device)
    with pytest.raises(StorageFailure):
        run_restore(restore_job(path, restore_root), RecordingReporter())
    assert leftovers(restore_root) == []


# --- hand-made archives that must be refused ------------------------------------------------

UNSAFE_ARCHIVES = {
    "dot-dot": [file_member("../escaped")],
    "dot-dot-deep": [folder_member("data"), file_member("data/../../escaped")],
    "absolute": [file_member("{outside}/escaped")],
    "link-to-absolute": [link_member("link", "/etc")],
    "link-climbing-out": [folder_member("data"), link_member("data/link", "../../escaped")],
    "link-then-member-through-it": [link_member("link", ".."), file_member("link/escaped")],
    "member-through-inner-link": [folder_member("data"), link_member("data/link", ".."),
                                  file_member("data/link/escaped")],
    "link-climbing-after-a-name": [folder_member("data"), link_member("data/a", "b/../..")],
    "hard-link": [file_member("target"), link_member("escaped", "target", tarfile.LNKTYPE)],
    "hard-link-outside": [link_member("escaped", "/etc/passwd", tarfile.LNKTYPE)],
    "fifo": [special_member("escaped", tarfile.FIFOTYPE)],
    "char-device": [special_member("escaped", tarfile.CHRTYPE)],
    "block-device": [special_member("escaped", tarfile.BLKTYPE)],
    "duplicate": [file_member("twice"), file_member("twice")],
}


def absolute_fixup(members, outside: Path):
    fixed = []
    for info, data in members:
        info = info.replace(name=info.name.format(outside=outside))
        fixed.append((info, data))
    return fixed


@pytest.mark.parametrize("case", sorted(UNSAFE_ARCHIVES))
def test_unsafe_members_are_refused_and_nothing_is_written(case, tmp_path, restore_root):
    members = absolute_fixup(UNSAFE_ARCHIVES[case], tmp_path)
    path = craft(tmp_path / "b-1.tar.zst.age", members)
    with pytest.raises(UnsafeArchiveMember):
        run_restore(restore_job(path, restore_root), RecordingReporter())
    assert leftovers(restore_root) == []
    assert leftovers(restore_root.parent) == ["restores"]
    assert "escaped" not in leftovers(tmp_path)


def test_a_member_named_with_nul_is_refused():
    with pytest.raises(UnsafeArchiveMember, match="NUL"):
        members.safe_parts("data/a\0b")


@pytest.mark.parametrize(("path", "target"), [
    ("link", "data/file"), ("data/link", "../other"), ("data/link", "./a/./b"),
    ("data/deep/link", "../../top"), ("data/link", ".."), ("link", "."),
])
def test_link_targets_inside_the_tree_are_allowed(path, target):
    members.check_link_target(path, path, target)


@pytest.mark.parametrize(("path", "target"), [
    ("link", ".."), ("data/link", "../.."), ("link", "/etc"), ("link", ""),
    ("data/link", "a/../.."), ("data/link", "a/.."), ("link", "a\0b"),
])
def test_link_targets_that_may_leave_the_tree_are_refused(path, target):
    with pytest.raises(UnsafeArchiveMember):
        members.check_link_target(path, path, target)


# --- hand-made archives that disagree with their manifest -----------------------------------

def test_a_manifest_with_another_sha256_is_corruption(tmp_path, restore_root):
    members = [folder_member("data"), file_member("data/f", b"real bytes")]
    lines = manifest_lines(members)
    lines[2]["sha256"] = hashlib.sha256(b"other bytes").hexdigest()
    path = craft(tmp_path / "b-1.tar.zst.age", members, manifest=lines)
    with pytest.raises(BackupCorrupted, match="data/f does not match"):
        run_restore(restore_job(path, restore_root), RecordingReporter())
    assert leftovers(restore_root) == []


BLAKE3_STREAM = {"comment": "h4backup file-hash=blake3"}


def test_a_blake3_backup_has_every_file_checked(tmp_path, restore_root):
    members = [folder_member("data"), file_member("data/f", b"real bytes")]
    good = craft(tmp_path / "good.tar.zst.age", members,
                 manifest=manifest_lines(members, "blake3"), pax_headers=BLAKE3_STREAM)
    outcome = run_restore(restore_job(good, restore_root), RecordingReporter())
    assert (outcome.path / "data" / "f").read_bytes() == b"real bytes"
    lines = manifest_lines(members, "blake3")
    lines[2]["blake3"] = blake3.blake3(b"other bytes").hexdigest()
    bad = craft(tmp_path / "b-1.tar.zst.age", members, manifest=lines, pax_headers=BLAKE3_STREAM)
    with pytest.raises(BackupCorrupted, match="data/f does not match"):
        run_restore(restore_job(bad, restore_root), RecordingReporter())


def test_a_stream_and_manifest_naming_other_file_hashes_is_corruption(tmp_path, restore_root):
    members = [folder_member("data"), file_member("data/f", b"real bytes")]
    path = craft(tmp_path / "b-1.tar.zst.age", members, manifest=manifest_lines(members),
                 pax_headers=BLAKE3_STREAM)
    with pytest.raises(BackupCorrupted, match="data/f does not match"):
        run_restore(restore_job(path, restore_root), RecordingReporter())


@pytest.mark.parametrize(("change", "message"), [
    (lambda lines: lines.pop(), "not in the manifest"),
    (lambda lines: lines.append({**lines[-1], "path": "data/g"}), "missing from the archive"),
    (lambda lines: lines[-1].update(target="elsewhere"), "does not match"),
])
def test_a_manifest_listing_other_entries_is_corruption(tmp_path, restore_root, change,
                                                        message):
    members = [folder_member("data"), link_member("data/l", "x")]
    lines = manifest_lines(members)
    change(lines)
    path = craft(tmp_path / "b-1.tar.zst.age", members, manifest=lines)
    with pytest.raises(BackupCorrupted, match=message):
        run_restore(restore_job(path, restore_root), RecordingReporter())
    assert leftovers(restore_root) == []


def test_an_archive_without_manifest_is_corruption(tmp_path, restore_root):
    path = craft(tmp_path / "b-1.tar.zst.age", [file_member("f")], manifest=False)
    with pytest.raises(BackupCorrupted, match="no manifest"):
        run_restore(restore_job(path, restore_root), RecordingReporter())
    assert leftovers(restore_root) == []


def test_a_member_after_the_manifest_is_corruption(tmp_path, restore_root):
    members = [file_member("f")]
    path = craft(tmp_path / "b-1.tar.zst", [*members, file_member(MANIFEST_NAME, b"{}\n"),
                                            file_member("late")], passphrase=None,
                 manifest=manifest_lines(members))
    with pytest.raises(BackupCorrupted, match="follows the manifest"):
        run_restore(restore_job(path, restore_root, passphrase=None), RecordingReporter())
    assert leftovers(restore_root) == []


def test_a_member_before_its_folder_is_corruption(tmp_path, restore_root):
    path = craft(tmp_path / "b-1.tar.zst.age", [file_member("data/f")])
    with pytest.raises(BackupCorrupted, match="before its folder"):
        run_restore(restore_job(path, restore_root), RecordingReporter())
    assert leftovers(restore_root) == []
