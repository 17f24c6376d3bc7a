"""The configured backup sources and a deterministic, memory-bounded walk over them.

The walk never follows a symlink below a source root and never opens anything: it only lstats
and lists, so a fifo or a device found in a tree cannot block or be read by accident. Entries
come in sorted pre-order, which keeps two backups of an unchanged tree byte-for-byte alike.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from common.errors import (
    FileSkipped,
    FileUnreadable,
    FileVanished,
    H4Error,
    SourceUnavailable,
)

WarningSink = Callable[[H4Error], None]

_SKIPPED_KINDS = (
    (stat.S_ISFIFO, "fifo"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
)


# How a walked file is opened, by the archive and by the read-ahead alike: a symlink that took
# its place is not followed, and a fifo that took it does not block the open.
SOURCE_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True)
class Source:
    """A named tree (or single file) to back up; the name is its top folder in the archive."""

    name: str
    path: Path


@dataclass(frozen=True)
class Entry:
    """One thing to archive: a directory, a regular file or a symlink."""

    archive_name: str
    path: str
    kind: str  # "dir" | "file" | "symlink"
    stat: os.stat_result


@dataclass
class _Frame:
    """A directory being listed: its children still to visit, last one first."""

    path: str
    archive_name: str
    pending: list[str]


def _ignore(_warning: H4Error) -> None:
    pass


def walk(
    sources: Iterable[Source],
    exclude: Iterable[os.PathLike | str] = (),
    on_warning: WarningSink = _ignore,
) -> Iterator[Entry]:
    """Every directory, file and symlink under the sources, in sorted order."""
    excluded = _excluded_identities(exclude)
    for source in sources:
        yield from _walk_source(source, excluded, on_warning)


def measure(
    sources: Iterable[Source], exclude: Iterable[os.PathLike | str] = ()
) -> tuple[int, int]:
    """Count of regular files and their total size, as the walk will find them now."""
    file_count = total_bytes = 0
    for entry in walk(sources, exclude):
        if entry.kind == "file":
            file_count += 1
            total_bytes += entry.stat.st_size
    return file_count, total_bytes


def _excluded_identities(exclude: Iterable[os.PathLike | str]) -> frozenset[tuple[int, int]]:
    # Device and inode, not path text: the backup folder may be named through a symlink or a
    # relative path and must still be recognised inside a source.
    identities = set()
    for path in exclude:
        try:
            st = os.stat(path)
        except OSError:
            continue
        identities.add((st.st_dev, st.st_ino))
    return frozenset(identities)


def _walk_source(
    source: Source, excluded: frozenset[tuple[int, int]], on_warning: WarningSink
) -> Iterator[Entry]:
    root = _root_entry(source)
    if (root.stat.st_dev, root.stat.st_ino) in excluded:
        return
    yield root
    if root.kind == "dir":
        top = _Frame(root.path, root.archive_name, _list_root(source, root.path))
        yield from _walk_below(top, excluded, on_warning)


def _walk_below(
    top: _Frame, excluded: frozenset[tuple[int, int]], on_warning: WarningSink
) -> Iterator[Entry]:
    # An explicit stack rather than recursion: deep trees cannot hit the recursion limit, and
    # only the names of the directories on the current path are held.
    stack = [top]
    while stack:
        frame = stack[-1]
        if not frame.pending:
            stack.pop()
            continue
        entry = _child_entry(frame, frame.pending.pop(), excluded, on_warning)
        if entry is not None:
            yield entry
            if entry.kind == "dir":
                stack.append(_Frame(entry.path, entry.archive_name, _list_dir(entry, on_warning)))


def _root_entry(source: Source) -> Entry:
    # The root is followed if it is a symlink: the administrator named it on purpose.
    path = os.fspath(source.path)
    try:
        st = os.stat(path)
    except OSError as error:
        raise SourceUnavailable(source.name, error.strerror or str(error)) from error
    if stat.S_ISDIR(st.st_mode):
        return Entry(source.name, path, "dir", st)
    if not stat.S_ISREG(st.st_mode):
        raise SourceUnavailable(source.name, "not a directory or a regular file")
    if not os.access(path, os.R_OK):
        raise SourceUnavailable(source.name, "permission denied")
    return Entry(source.name, path, "file", st)


def _list_root(source: Source, path: str) -> list[str]:
    try:
        return _sorted_children(path)
    except OSError as error:
        raise SourceUnavailable(source.name, error.strerror or str(error)) from error


def _list_dir(entry: Entry, on_warning: WarningSink) -> list[str]:
    try:
        return _sorted_children(entry.path)
    except (FileNotFoundError, NotADirectoryError):
        on_warning(FileVanished(entry.archive_name))
    except OSError as error:
        on_warning(FileUnreadable(entry.archive_name, error.strerror or str(error)))
    return []


def _sorted_children(path: str) -> list[str]:
    """Names in a directory, reversed so that popping from the end visits them in order."""
    with os.scandir(path) as listing:
        names = [child.name for child in listing]
    names.sort(reverse=True)
    return names


def _child_entry(
    frame: _Frame, name: str, excluded: frozenset[tuple[int, int]], on_warning: WarningSink
) -> Entry | None:
    path = os.path.join(frame.path, name)
    archive_name = f"{frame.archive_name}/{name}"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        on_warning(FileVanished(archive_name))
        return None
    except OSError as error:
        on_warning(FileUnreadable(archive_name, error.strerror or str(error)))
        return None
    if (st.st_dev, st.st_ino) in excluded:
        return None
    return _classify(archive_name, path, st, on_warning)


def _classify(
    archive_name: str, path: str, st: os.stat_result, on_warning: WarningSink
) -> Entry | None:
    if stat.S_ISDIR(st.st_mode):
        return Entry(archive_name, path, "dir", st)
    if stat.S_ISREG(st.st_mode):
        return Entry(archive_name, path, "file", st)
    if stat.S_ISLNK(st.st_mode):
        return Entry(archive_name, path, "symlink", st)
    on_warning(FileSkipped(archive_name, _kind_name(st.st_mode)))
    return None


def _kind_name(mode: int) -> str:
    for test, name in _SKIPPED_KINDS:
        if test(mode):
            return name
    return "unsupported file type"
