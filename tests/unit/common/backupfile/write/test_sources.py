import os
import socket
from pathlib import Path

import pytest

from common.backupfile.write.sources import Source, measure, walk
from common.errors import FileSkipped, FileVanished, SourceUnavailable


def names(entries):
    return [(entry.archive_name, entry.kind) for entry in entries]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "b" / "deep").mkdir(parents=True)
    (root / "a").mkdir()
    (root / "a" / "one.txt").write_text("1")
    (root / "b" / "deep" / "two.bin").write_bytes(b"22")
    (root / "c.txt").write_text("333")
    return root


def test_walk_yields_sorted_preorder_with_archive_names(tree: Path) -> None:
    assert names(walk([Source("cfg", tree)])) == [
        ("cfg", "dir"),
        ("cfg/a", "dir"),
        ("cfg/a/one.txt", "file"),
        ("cfg/b", "dir"),
        ("cfg/b/deep", "dir"),
        ("cfg/b/deep/two.bin", "file"),
        ("cfg/c.txt", "file"),
    ]


def test_walk_visits_sources_in_the_given_order(tree: Path, tmp_path: Path) -> None:
    single = tmp_path / "single.conf"
    single.write_text("x")
    found = names(walk([Source("zz", single), Source("aa", tree / "a")]))
    assert found == [("zz", "file"), ("aa", "dir"), ("aa/one.txt", "file")]


def test_walk_skips_excluded_folder_inside_a_source(tree: Path) -> None:
    backups = tree / "b"
    found = names(walk([Source("cfg", tree)], exclude=[backups]))
    assert not [name for name, _ in found if name.startswith("cfg/b")]
    assert ("cfg/c.txt", "file") in found


def test_walk_recognises_an_excluded_folder_named_through_a_symlink(
    tree: Path, tmp_path: Path
) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(tree / "b")
    found = names(walk([Source("cfg", tree)], exclude=[alias]))
    assert ("cfg/b", "dir") not in found


def test_walk_reports_fifo_and_socket_as_skipped(tree: Path) -> None:
    os.mkfifo(tree / "pipe")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(tree / "sock"))
        warnings = []
        found = names(walk([Source("cfg", tree)], on_warning=warnings.append))
    assert ("cfg/pipe", "file") not in found and ("cfg/sock", "file") not in found
    assert [(type(w), w.args_list) for w in warnings] == [
        (FileSkipped, ["cfg/pipe", "fifo"]),
        (FileSkipped, ["cfg/sock", "socket"]),
    ]


def test_walk_does_not_follow_symlinks(tree: Path) -> None:
    (tree / "link").symlink_to(tree / "b")
    found = names(walk([Source("cfg", tree)]))
    assert ("cfg/link", "symlink") in found
    assert not [name for name, _ in found if name.startswith("cfg/link/")]


def test_walk_follows_a_source_root_that_is_a_symlink(tree: Path, tmp_path: Path) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(tree / "a")
    assert names(walk([Source("a", alias)])) == [("a", "dir"), ("a/one.txt", "file")]


def test_walk_of_a_missing_root_raises_source_unavailable(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable) as caught:
        list(walk([Source("gone", tmp_path / "nothing")]))
    assert caught.value.args_list[0] == "gone"


def test_walk_of_a_fifo_root_raises_source_unavailable(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(SourceUnavailable):
        list(walk([Source("pipe", tmp_path / "pipe")]))


def test_entry_vanishing_during_the_walk_is_a_warning(tree: Path) -> None:
    warnings = []
    entries = walk([Source("cfg", tree)], on_warning=warnings.append)
    assert [next(entries).archive_name for _ in range(2)] == ["cfg", "cfg/a"]
    (tree / "c.txt").unlink()
    remaining = names(entries)
    assert ("cfg/c.txt", "file") not in remaining
    assert [(type(w), w.args_list) for w in warnings] == [(FileVanished, ["cfg/c.txt"])]


def test_walk_lstats_entries(tree: Path) -> None:
    (tree / "link").symlink_to("a/one.txt")
    link = next(e for e in walk([Source("cfg", tree)]) if e.archive_name == "cfg/link")
    assert link.stat.st_ino == os.lstat(tree / "link").st_ino


def test_measure_counts_regular_files_and_their_bytes(tree: Path) -> None:
    (tree / "link").symlink_to("c.txt")
    assert measure([Source("cfg", tree)]) == (3, 6)


def test_measure_honours_exclusions(tree: Path) -> None:
    assert measure([Source("cfg", tree)], exclude=[tree / "b"]) == (2, 4)
