import os
import threading
from pathlib import Path

import pytest

from common.backupfile.write import readahead
from common.backupfile.write.readahead import ReadAhead, advise_will_need
from common.backupfile.write.sources import Source, walk


def _tree(root: Path, files: int, size: int) -> Path:
    root.mkdir()
    for index in range(files):
        (root / f"f{index:03}").write_bytes(bytes(size))
    return root


def _entries(root: Path):
    return walk([Source("t", root)])


def test_every_entry_comes_through_in_the_walks_order(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t", 20, 100)
    (root / "sub").mkdir()
    (root / "sub" / "inner").write_text("x")
    (root / "link").symlink_to("f000")
    expected = [entry.archive_name for entry in _entries(root)]
    got = [entry.archive_name for entry in ReadAhead(_entries(root), ahead_bytes=250)]
    assert got == expected


def test_files_are_asked_for_a_window_of_bytes_ahead_of_the_one_taken(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t", 10, 100)
    advised: list[str] = []
    seen_when_taken = []
    for entry in ReadAhead(_entries(root), ahead_bytes=250, advise=advised.append):
        if entry.kind == "file":
            seen_when_taken.append((Path(entry.path).name, [Path(p).name for p in advised]))
    # Taking f000 leaves f001 and f002 (200 bytes) in the window, so f003 is asked for
    # before f000 is handed on.
    assert seen_when_taken[0] == ("f000", ["f000", "f001", "f002", "f003"])
    assert seen_when_taken[1] == ("f001", ["f000", "f001", "f002", "f003", "f004"])
    # Never more than the window's bytes, and one file, past the one taken; each file once.
    for name, asked in seen_when_taken:
        assert len(asked) <= int(name[1:]) + 4
    assert sorted(advised) == sorted(set(advised)) and len(advised) == 10


def test_prime_asks_before_anything_is_taken(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t", 10, 100)
    advised: list[str] = []
    ahead = ReadAhead(_entries(root), ahead_bytes=250, advise=advised.append)
    ahead.prime()
    assert [Path(p).name for p in advised] == ["f000", "f001", "f002"]


def test_a_folder_of_empty_files_stops_the_window_at_its_entry_count(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t", 50, 0)
    advised: list[str] = []
    ahead = ReadAhead(_entries(root), ahead_entries=8, advise=advised.append)
    ahead.prime()
    assert len(advised) == 7  # the source's own folder is the first of the 8 entries


def test_advice_is_given_for_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"x" * 10_000)
    assert advise_will_need(str(path)) is True


def test_advice_never_follows_a_symlink_nor_waits_on_a_fifo(tmp_path: Path) -> None:
    (tmp_path / "target").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    os.mkfifo(tmp_path / "fifo")  # a fifo opened for reading would wait for a writer
    results: list[bool] = []
    worker = threading.Thread(target=lambda: results.extend(
        advise_will_need(str(tmp_path / name)) for name in ("link", "fifo", "missing")))
    worker.start()
    worker.join(5)
    assert not worker.is_alive()
    assert results == [False, False, False]


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="no posix_fadvise here")
def test_without_an_advice_given_the_modules_default_is_taken(tmp_path: Path, monkeypatch) -> None:
    root = _tree(tmp_path / "t", 3, 10)
    advised: list[str] = []
    monkeypatch.setattr(readahead, "_ADVISE", advised.append)
    list(ReadAhead(_entries(root)))
    assert len(advised) == 3


def test_a_larger_prime_asks_further_then_the_window_shrinks_back(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t", 10, 100)
    advised: list[str] = []
    ahead = ReadAhead(_entries(root), ahead_bytes=250, advise=advised.append)
    ahead.prime(650)
    assert len(advised) == 7
    taken = iter(ahead)
    for _ in range(5):  # the source's folder, then f000 to f003: 300 bytes left ahead
        next(taken)
    assert len(advised) == 7  # nothing more until the window is below its own 250 bytes
    next(taken)  # f004: 200 bytes left, so f007 is asked for before f004 comes out
    assert len(advised) == 8
