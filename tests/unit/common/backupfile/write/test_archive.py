import hashlib
import io
import os
import random
import subprocess
import tarfile
from pathlib import Path

import blake3
import pytest

from common.backupfile.format.manifest import MANIFEST_NAME, read_manifest
from common.backupfile.io.blocks import COPY_SIZE
from common.backupfile.write import archive as archive_module
from common.backupfile.write.archive import ArchiveWriter, GuardedReader
from common.backupfile.write.sources import Entry, Source, walk
from common.errors import BackupCorrupted, FileChanged, FileUnreadable, FileVanished
from tests.tools import require_tool

UNICODE_NAME = "naïve café ☃ 日本.txt"
LONG_DIR = "a" * 60 + "/" + "b" * 60 + "/" + "c" * 60


def sample_tree(root: Path) -> Path:
    """Nested folders, an empty file, a unicode name, a long path, a symlink, text and binary."""
    (root / "etc" / "nested" / "deeper").mkdir(parents=True)
    (root / "etc" / "empty-dir").mkdir()
    (root / "etc" / LONG_DIR).mkdir(parents=True)
    (root / "etc" / "app.conf").write_text("key = value\n" * 500)
    (root / "etc" / "empty").write_bytes(b"")
    (root / "etc" / UNICODE_NAME).write_text("unicode content ✓\n")
    (root / "etc" / LONG_DIR / ("d" * 120 + ".bin")).write_bytes(b"long path")
    (root / "etc" / "nested" / "deeper" / "random.bin").write_bytes(random.randbytes(300_000))
    (root / "etc" / "nested" / "link").symlink_to("../app.conf")
    os.chmod(root / "etc" / "app.conf", 0o640)
    return root / "etc"


def tree_contents(root: Path) -> dict[str, object]:
    """Relative path to bytes, symlink target or 'dir', for comparing trees."""
    found: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[relative] = ("symlink", os.readlink(path))
        elif path.is_dir():
            found[relative] = "dir"
        else:
            found[relative] = path.read_bytes()
    return found


def write_archive(sources, sink, warnings=None, **callbacks) -> ArchiveWriter:
    warn = (warnings.append if warnings is not None else lambda _w: None)
    with ArchiveWriter(sink, "backup-1", [s.name for s in sources], 1_700_000_000_123,
                       warn, **callbacks) as writer:
        for entry in walk(sources, on_warning=warn):
            writer.add(entry)
    return writer


def manifest_of(tar_path: Path):
    with tarfile.open(tar_path) as tar:
        member = tar.getmembers()[-1]
        assert member.name == MANIFEST_NAME
        header, entries = read_manifest(tar.extractfile(member))
        return header, list(entries)


@pytest.fixture
def archived(tmp_path: Path) -> tuple[Path, Path]:
    source = sample_tree(tmp_path / "src")
    tar_path = tmp_path / "out.tar"
    with open(tar_path, "wb") as sink:
        write_archive([Source("etc", source)], sink)
    return source, tar_path


def test_python_tarfile_extracts_the_same_tree(archived, tmp_path: Path) -> None:
    source, tar_path = archived
    with tarfile.open(tar_path) as tar:
        tar.extractall(tmp_path / "out", filter="tar")
    assert tree_contents(tmp_path / "out" / "etc") == tree_contents(source)
    assert (tmp_path / "out" / "etc" / "app.conf").stat().st_mode & 0o777 == 0o640


def test_gnu_tar_lists_and_extracts_the_same_tree(archived, tmp_path: Path) -> None:
    tar = require_tool("tar")
    source, tar_path = archived
    listing = subprocess.run([tar, "-tf", tar_path], check=True, capture_output=True).stdout
    assert f"etc/{UNICODE_NAME}".encode() in listing.splitlines()
    (tmp_path / "gnu").mkdir()
    subprocess.run([tar, "-xf", tar_path, "-C", tmp_path / "gnu"], check=True)
    assert tree_contents(tmp_path / "gnu" / "etc") == tree_contents(source)


def test_archive_ends_with_the_manifest(archived) -> None:
    _, tar_path = archived
    with tarfile.open(tar_path) as tar:
        assert tar.getnames()[-1] == MANIFEST_NAME
        assert tar.getnames()[0] == "etc"


def test_manifest_header_names_backup_sources_and_file_hash(archived) -> None:
    header, _ = manifest_of(archived[1])
    assert (header.backup_id, header.created_at, header.sources, header.file_hash) == (
        "backup-1", 1_700_000_000_123, ("etc",), "blake3")


def test_the_stream_names_the_file_hash_before_any_member(archived) -> None:
    with tarfile.open(archived[1]) as tar:
        assert tar.pax_headers == {"comment": "h4backup file-hash=blake3"}


def test_manifest_lists_every_member_with_its_real_blake3(archived) -> None:
    source, tar_path = archived
    _, entries = manifest_of(tar_path)
    with tarfile.open(tar_path) as tar:
        assert [e.path for e in entries] == tar.getnames()[:-1]
    for entry in entries:
        path = source.parent / entry.path
        if entry.type == "file":
            assert entry.digest == blake3.blake3(path.read_bytes()).hexdigest()
            assert entry.size == path.stat().st_size
        elif entry.type == "symlink":
            assert entry.target == "../app.conf"


def test_manifest_records_mode_and_mtime(archived) -> None:
    source, tar_path = archived
    _, entries = manifest_of(tar_path)
    conf = next(e for e in entries if e.path == "etc/app.conf")
    assert conf.mode == 0o640
    assert conf.mtime == int((source / "app.conf").stat().st_mtime)


def test_writer_counts_files_and_source_bytes(tmp_path: Path) -> None:
    source = sample_tree(tmp_path / "src")
    writer = write_archive([Source("etc", source)], io.BytesIO())
    sizes = [p.stat().st_size for p in source.rglob("*") if p.is_file() and not p.is_symlink()]
    assert (writer.files, writer.source_bytes) == (len(sizes), sum(sizes))


def test_single_file_source_is_stored_under_its_name(tmp_path: Path) -> None:
    (tmp_path / "one.conf").write_text("x=1")
    sink = io.BytesIO()
    write_archive([Source("one.conf", tmp_path / "one.conf")], sink)
    sink.seek(0)
    with tarfile.open(fileobj=sink) as tar:
        assert tar.extractfile("one.conf").read() == b"x=1"


def test_guarded_reader_pads_a_shrunk_file_with_zeros() -> None:
    reader = GuardedReader(io.BytesIO(b"abc"), 6)
    assert reader.read(4) + reader.read(4) == b"abc\0\0\0"
    assert reader.shrank and not reader.grew()
    assert reader.hasher.hexdigest() == blake3.blake3(b"abc\0\0\0").hexdigest()


def test_guarded_reader_stops_a_grown_file_at_the_recorded_size() -> None:
    reader = GuardedReader(io.BytesIO(b"abcdef"), 4)
    assert reader.read(10) == b"abcd"
    assert reader.read(10) == b""
    assert reader.grew()


def test_guarded_reader_turns_a_read_error_into_padding() -> None:
    class Failing(io.RawIOBase):
        def read(self, n: int = -1) -> bytes:
            raise OSError(5, "Input/output error")

    reader = GuardedReader(Failing(), 3)
    assert reader.read(3) == b"\0\0\0"
    assert reader.read_error is not None


def archive_with_midway_change(tmp_path: Path, change) -> tuple[Path, list]:
    """Archives a 3 MiB file, calling change(path) once the first MiB has been read."""
    path = tmp_path / "src" / "big.bin"
    path.parent.mkdir()
    path.write_bytes(random.randbytes(3 * COPY_SIZE))
    calls, warnings = [], []

    def on_read(n: int) -> None:
        calls.append(n)
        if len(calls) == 1:
            change(path)

    tar_path = tmp_path / "out.tar"
    with open(tar_path, "wb") as sink:
        write_archive([Source("src", path.parent)], sink, warnings, on_read=on_read)
    return tar_path, warnings


def test_file_shrinking_while_read_gives_file_changed_and_a_valid_archive(tmp_path) -> None:
    tar_path, warnings = archive_with_midway_change(
        tmp_path, lambda path: os.truncate(path, COPY_SIZE + 10))
    assert [(type(w), w.args_list) for w in warnings] == [(FileChanged, ["src/big.bin"])]
    with tarfile.open(tar_path) as tar:
        data = tar.extractfile("src/big.bin").read()
    assert len(data) == 3 * COPY_SIZE and data[COPY_SIZE + 10:] == bytes(2 * COPY_SIZE - 10)
    _, entries = manifest_of(tar_path)
    assert entries[-1].digest == blake3.blake3(data).hexdigest()


def test_file_growing_while_read_gives_file_changed_and_a_valid_archive(tmp_path) -> None:
    def grow(path: Path) -> None:
        with open(path, "ab") as appended:
            appended.write(b"more")

    tar_path, warnings = archive_with_midway_change(tmp_path, grow)
    assert [type(w) for w in warnings] == [FileChanged]
    with tarfile.open(tar_path) as tar:
        assert tar.getmember("src/big.bin").size == 3 * COPY_SIZE
        assert tar.getnames()[-1] == MANIFEST_NAME


def test_file_rewritten_in_place_gives_file_changed(tmp_path) -> None:
    def touch(path: Path) -> None:
        os.utime(path, ns=(0, 1_000_000_000))

    _, warnings = archive_with_midway_change(tmp_path, touch)
    assert [type(w) for w in warnings] == [FileChanged]


def test_file_vanished_before_open_is_left_out_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "gone.txt").write_text("x")
    entry = Entry("src/gone.txt", str(tmp_path / "gone.txt"), "file",
                  os.lstat(tmp_path / "gone.txt"))
    (tmp_path / "gone.txt").unlink()
    warnings, sink = [], io.BytesIO()
    with ArchiveWriter(sink, "b", ["src"], 0, warnings.append) as writer:
        writer.add(entry)
    sink.seek(0)
    with tarfile.open(fileobj=sink) as tar:
        assert tar.getnames() == [MANIFEST_NAME]
    assert [type(w) for w in warnings] == [FileVanished]


def test_permission_denied_is_a_file_unreadable_warning(tmp_path, monkeypatch) -> None:
    secret = sample_tree(tmp_path / "src") / "app.conf"
    real_open = os.open

    def refusing_open(path, flags, *args):
        if os.fspath(path) == str(secret):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args)

    monkeypatch.setattr(archive_module.os, "open", refusing_open)
    warnings = []
    write_archive([Source("etc", secret.parent)], io.BytesIO(), warnings)
    assert [(type(w), w.args_list) for w in warnings] == [
        (FileUnreadable, ["etc/app.conf", "Permission denied"])]


def test_read_manifest_rejects_a_foreign_header() -> None:
    with pytest.raises(BackupCorrupted):
        read_manifest(io.BytesIO(b'{"format": "other", "version": 1}\n'))


def test_read_manifest_rejects_a_broken_entry_line() -> None:
    header = b'{"format":"h4backup-manifest","version":1,"backupId":"b","createdAt":1,"sources":[]}'
    _, entries = read_manifest(io.BytesIO(header + b"\n{not json\n"))
    with pytest.raises(BackupCorrupted):
        list(entries)


def test_read_manifest_reads_a_version_1_manifest_as_sha256() -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    text = (b'{"format":"h4backup-manifest","version":1,"backupId":"b","createdAt":1,'
            b'"sources":["s"]}\n{"path":"s/f","type":"file","size":1,"mode":420,"mtime":1,'
            b'"sha256":"' + digest.encode() + b'"}\n')
    header, entries = read_manifest(io.BytesIO(text))
    assert header.file_hash == "sha256"
    assert [entry.digest for entry in entries] == [digest]


@pytest.mark.parametrize("file_hash", ['"md5"', "null"])
def test_read_manifest_rejects_an_unknown_file_hash(file_hash: str) -> None:
    header = ('{"format":"h4backup-manifest","version":2,"backupId":"b","createdAt":1,'
              f'"sources":[],"fileHash":{file_hash}}}\n')
    with pytest.raises(BackupCorrupted):
        read_manifest(io.BytesIO(header.encode()))
