"""Caps on what an archive may make a worker hold, and on what a restore may write."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from common.backupfile.format import members
from common.backupfile.format.manifest import MAX_LINE, read_manifest
from common.backupfile.format.members import MAX_GNU_LONG, MAX_NAME_BYTES, MAX_PAX_HEADER
from common.backupfile.io.folder import stored_at
from common.backupfile.io.hashing import format_sha512
from common.backupfile.read import freespace, restore
from common.backupfile.read.restore import RestoreJob, run_restore
from common.backupfile.read.verify import HASH_MISMATCH, VerifyJob, run_verify
from common.errors import (
    ArchiveLimitExceeded,
    BackupCorrupted,
    RestoreTooLarge,
    UnsafeArchiveMember,
)
from tests.security.crafted import MANIFEST_NAME, MTIME, CraftedBackup, pax_record

KiB, MiB = 1 << 10, 1 << 20


class Reporter:
    def progress(self, percent: int) -> None:
        pass

    def warning(self, error) -> None:
        raise AssertionError(f"unexpected warning {error}")

    def should_stop(self) -> bool:
        return False


@pytest.fixture
def restore_root(tmp_path: Path) -> Path:
    root = tmp_path / "restores"
    root.mkdir()
    return root


def restored(tmp_path: Path, root: Path, backup: CraftedBackup):
    path = tmp_path / "b-1.tar.zst"
    path.write_bytes(backup.finish())
    try:
        return run_restore(RestoreJob("b-1", *stored_at(path), root), Reporter())
    finally:
        assert [p for p in os.listdir(root) if p.endswith(".staging")] == []


def refused(tmp_path, root, backup, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        restored(tmp_path, root, backup)
    assert os.listdir(root) == []


def with_manifest(backup: CraftedBackup) -> CraftedBackup:
    backup.manifest()
    return backup


# --- tar headers ----------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "cap"), [
    (tarfile.XHDTYPE, MAX_PAX_HEADER), (tarfile.XGLTYPE, MAX_PAX_HEADER),
    (tarfile.GNUTYPE_LONGNAME, MAX_GNU_LONG), (tarfile.GNUTYPE_LONGLINK, MAX_GNU_LONG),
], ids=["pax", "pax-global", "gnu-long-name", "gnu-long-link"])
def test_an_extension_header_over_its_cap_is_refused_before_its_payload_is_read(
        tmp_path, restore_root, kind, cap):
    # The payload is not there at all: reading it would end in a corrupt stream instead.
    backup = CraftedBackup()
    backup.declare(kind, cap + 1)
    refused(tmp_path, restore_root, backup, ArchiveLimitExceeded,
            f"of {cap + 1} bytes, at most {cap}")


def test_an_extension_header_at_its_cap_is_read(tmp_path, restore_root):
    backup = CraftedBackup()
    prefix, suffix = pax_record(MAX_PAX_HEADER, "comment")
    backup.extension(tarfile.XHDTYPE, MAX_PAX_HEADER, prefix, b"a", suffix)
    backup.file("tree/a", b"a")
    outcome = restored(tmp_path, restore_root, with_manifest(backup))
    assert (outcome.path / "tree" / "a").read_bytes() == b"a"


def test_global_pax_headers_share_one_budget(tmp_path, restore_root):
    backup = CraftedBackup()
    for name in ("tree/a", "tree/b"):
        prefix, suffix = pax_record(600 * KiB, "comment")
        backup.extension(tarfile.XGLTYPE, 600 * KiB, prefix, b"g", suffix)
        backup.file(name)
    refused(tmp_path, restore_root, with_manifest(backup), ArchiveLimitExceeded,
            "global pax headers")


def test_a_run_of_nine_extension_headers_is_refused(tmp_path, restore_root):
    backup = CraftedBackup()
    for _ in range(9):
        prefix, suffix = pax_record(32, "comment")
        backup.extension(tarfile.XHDTYPE, 32, prefix, b"c", suffix)
    backup.file("tree/a")
    refused(tmp_path, restore_root, with_manifest(backup), ArchiveLimitExceeded,
            "9 extension headers in a row, at most 8")


def test_a_negative_size_is_corruption(tmp_path, restore_root):
    backup = CraftedBackup()
    info = tarfile.TarInfo("tree/negative")
    info.size, info.mtime = -1, MTIME
    backup.raw(info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape"))
    refused(tmp_path, restore_root, with_manifest(backup), BackupCorrupted, "-1 bytes")


def test_a_gnu_sparse_member_is_refused(tmp_path, restore_root):
    backup = CraftedBackup()
    backup.declare(tarfile.GNUTYPE_SPARSE, 0)
    refused(tmp_path, restore_root, backup, UnsafeArchiveMember, "sparse")


def test_a_pax_sparse_member_is_refused_before_its_map_is_read(tmp_path, restore_root):
    backup = CraftedBackup()
    info = tarfile.TarInfo("tree/GNUSparseFile.0/s")
    info.size, info.mtime = 512, MTIME
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                        "GNU.sparse.name": "tree/s", "GNU.sparse.realsize": str(1 << 40)}
    backup.header(info)
    # A map of ever more numbers: version 1.0 would read it to the end of the stream.
    backup.raw(b"99999999999\n" + b"0\n" * 250 + b"00")
    refused(tmp_path, restore_root, with_manifest(backup), UnsafeArchiveMember, "tree/s")


def test_more_members_than_the_cap_are_refused(tmp_path, restore_root, monkeypatch):
    monkeypatch.setattr(members, "MAX_MEMBERS", 3)
    backup = CraftedBackup()
    for index in range(3):
        backup.file(f"tree/{index}")
    refused(tmp_path, restore_root, with_manifest(backup), ArchiveLimitExceeded,
            "4 members, at most 3")


@pytest.mark.parametrize("field", ["name", "link target"])
def test_a_name_or_link_target_over_4096_bytes_is_refused(tmp_path, restore_root, field):
    long = "tree/" + "n" * (MAX_NAME_BYTES - 4)
    info = tarfile.TarInfo(long if field == "name" else "tree/link")
    info.type, info.linkname, info.mtime = tarfile.SYMTYPE, "x", MTIME
    if field == "link target":
        info.linkname = long
    backup = CraftedBackup()
    backup.header(info)
    refused(tmp_path, restore_root, with_manifest(backup), ArchiveLimitExceeded,
            f"member {field} of 4097 bytes")


# --- the manifest ---------------------------------------------------------------------------

def test_a_manifest_larger_than_its_members_allow_is_refused_unread(tmp_path, restore_root):
    backup = CraftedBackup()
    backup.file("tree/a")
    info = tarfile.TarInfo(MANIFEST_NAME)
    info.size, info.mtime = 3 * MAX_LINE + 1, MTIME
    backup.header(info)
    refused(tmp_path, restore_root, backup, ArchiveLimitExceeded, "a manifest of 196609 bytes")


def test_a_manifest_line_over_64_kib_is_refused(tmp_path, restore_root):
    backup = CraftedBackup()
    for name in ("tree/a", "tree/b", "tree/c"):
        backup.file(name)
    backup.manifest(size=100 * KiB)
    refused(tmp_path, restore_root, backup, ArchiveLimitExceeded, "line 1 is longer")


def test_blank_manifest_lines_beyond_the_members_are_refused(tmp_path, restore_root):
    backup = CraftedBackup()
    backup.file("tree/a")
    backup.manifest(extra=b"\n" * 3)
    refused(tmp_path, restore_root, backup, ArchiveLimitExceeded, "manifest lines")


def test_read_manifest_refuses_a_line_over_the_cap():
    with pytest.raises(ArchiveLimitExceeded, match="line 1"):
        read_manifest(io.BytesIO(b"{" + b" " * MAX_LINE + b"}\n"))


# --- the restore filesystem -----------------------------------------------------------------

class FakeFilesystem:
    """statvfs of a filesystem of `blocks` 4 KiB blocks and `inodes` inodes, some of them free."""

    def __init__(self, blocks: int, inodes: int) -> None:
        self.blocks, self.inodes = blocks, inodes
        self.free_blocks, self.free_inodes = blocks, inodes

    def statvfs(self, _path) -> os.statvfs_result:
        return os.statvfs_result((4096, 4096, self.blocks, self.free_blocks, self.free_blocks,
                                  self.inodes, self.free_inodes, self.free_inodes, 0, 255))


@pytest.fixture
def filesystem(monkeypatch) -> FakeFilesystem:
    fake = FakeFilesystem(blocks=2560, inodes=1000)  # 10 MiB
    monkeypatch.setattr(os, "statvfs", fake.statvfs)
    return fake


def test_a_restore_larger_than_the_free_space_is_refused(tmp_path, restore_root, filesystem):
    backup = CraftedBackup()
    for index in range(3):
        backup.file(f"tree/zeros{index}", bytes(MiB), 4)
    refused(tmp_path, restore_root, with_manifest(backup), RestoreTooLarge,
            r"need 12\.0 MiB and 9\.5 MiB may be used")


def test_a_restore_that_fits_above_the_reserve_succeeds(tmp_path, restore_root, filesystem):
    backup = CraftedBackup()
    backup.file("tree/zeros", bytes(MiB), 9)
    outcome = restored(tmp_path, restore_root, with_manifest(backup))
    assert outcome.bytes == 9 * MiB


def test_members_beyond_the_free_inodes_are_refused(tmp_path, restore_root, filesystem):
    filesystem.free_inodes = 60  # 10 beyond the reserve of 50
    backup = CraftedBackup()
    for index in range(60):
        backup.file(f"tree/{index:02d}")
    refused(tmp_path, restore_root, with_manifest(backup), RestoreTooLarge,
            "need 11 inodes and 10 may be used")


def test_a_restore_stops_when_others_fill_the_disk(tmp_path, restore_root, filesystem,
                                                   monkeypatch):
    monkeypatch.setattr(freespace, "_RECHECK_BYTES", MiB)
    checks = []

    def others_write(path):
        checks.append(path)
        if len(checks) > 1:
            filesystem.free_blocks = 100  # under the reserve of 128 blocks
        return FakeFilesystem.statvfs(filesystem, path)

    monkeypatch.setattr(os, "statvfs", others_write)
    backup = CraftedBackup()
    backup.file("tree/zeros", bytes(MiB), 4)
    refused(tmp_path, restore_root, with_manifest(backup), RestoreTooLarge, "has fallen to")


def test_folder_names_beyond_their_budget_are_refused(tmp_path, restore_root, monkeypatch):
    monkeypatch.setattr(restore, "_MAX_FOLDER_BYTES", 100)
    backup = CraftedBackup()
    for index in range(10):
        backup.folder(f"tree/folder{index}")
    refused(tmp_path, restore_root, with_manifest(backup), ArchiveLimitExceeded, "folder names")


def test_verify_tells_a_limit_from_damage_by_the_stored_hash(tmp_path):
    backup = CraftedBackup()
    backup.declare(tarfile.XHDTYPE, MAX_PAX_HEADER + 1)
    path = tmp_path / "b-1.tar.zst"
    path.write_bytes(backup.finish())
    stored_hash = format_sha512(hashlib.sha512(path.read_bytes()).digest())
    with pytest.raises(ArchiveLimitExceeded):
        run_verify(VerifyJob("b-1", *stored_at(path), stored_hash), Reporter())
    with pytest.raises(BackupCorrupted, match=HASH_MISMATCH):
        zeros = "SHA-512:" + ":".join(["00"] * 64)
        run_verify(VerifyJob("b-1", *stored_at(path), zeros), Reporter())
