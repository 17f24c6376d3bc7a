"""What makes a tar member safe to restore: its name, its type and, for a symlink, its target;
and what its headers may make a reader hold in memory.

tarfile reads the payload of a pax or GNU extension header whole, whatever size the header
declares, so a few KiB of compressed archive could make it hold gigabytes. `BoundedTarFile`
keeps tarfile's parsing but checks each declared size against a cap first, before a byte of
the payload is read. The caps are generous for any tree a backup holds.
"""

from __future__ import annotations

import tarfile
from typing import Any

from common.errors import ArchiveLimitExceeded, BackupCorrupted, UnsafeArchiveMember

# PATH_MAX on Linux: no longer name or link target could be restored anyway.
MAX_NAME_BYTES = 4096
# Ours hold a few records per member (a long or non-ASCII path, a link target, a large size):
# a few KiB at most.
MAX_PAX_HEADER = 1 << 20
# A GNU long name or link: the name and its terminating NUL.
MAX_GNU_LONG = MAX_NAME_BYTES + 1
# tarfile follows a run of extension headers recursively, holding each payload meanwhile; GNU
# tar writes at most a long name, a long link and a pax header before one member.
MAX_EXTENSIONS_IN_A_ROW = 8
# Far beyond any configuration tree, yet it bounds what a scan keeps in memory per member: a
# digest of each folder and symlink path, about 110 MB for a million (and a restore's folder
# list, read/restore.py): a worker reading any archive stays under 400 MiB.
MAX_MEMBERS = 1_000_000

_REFUSED_TYPES = {tarfile.LNKTYPE: "hard link", tarfile.CHRTYPE: "character device",
                  tarfile.BLKTYPE: "block device", tarfile.FIFOTYPE: "fifo"}
_PAX_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
_GNU_LONG_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
_SPARSE = "sparse file (never in a backup; its map could be of any size)"


class HeaderLimits:
    """Counts what the headers of one archive declare, and refuses what passes a cap."""

    def __init__(self) -> None:
        self.members = 0
        self._in_a_row = 0
        self._global_bytes = 0

    def admit(self, header: tarfile.TarInfo) -> None:
        """Called with each header as parsed, before tarfile reads anything it declares."""
        if header.size < 0:
            raise BackupCorrupted(f"tar stream: a header declares {header.size} bytes")
        if header.type in _PAX_TYPES:
            self._extension("a pax header of {} bytes", header.size, MAX_PAX_HEADER)
            if header.type == tarfile.XGLTYPE:
                # Global headers accumulate for the whole archive: one budget for all of them.
                self._global_bytes += header.size
                _check("global pax headers of {} bytes in all", self._global_bytes,
                       MAX_PAX_HEADER)
        elif header.type in _GNU_LONG_TYPES:
            self._extension("a GNU long name or link of {} bytes", header.size, MAX_GNU_LONG)
        elif header.type == tarfile.GNUTYPE_SPARSE:
            raise UnsafeArchiveMember(header.name, _SPARSE)
        else:
            self._in_a_row = 0
            self.members += 1
            _check("{} members", self.members, MAX_MEMBERS)

    def _extension(self, what: str, size: int, cap: int) -> None:
        _check(what, size, cap)
        self._in_a_row += 1
        _check("{} extension headers in a row", self._in_a_row, MAX_EXTENSIONS_IN_A_ROW)


def _check(what: str, amount: int, cap: int) -> None:
    """ArchiveLimitExceeded once amount passes cap; what says of what, with {} for amount."""
    if amount > cap:
        raise ArchiveLimitExceeded(f"{what.format(amount)}, at most {cap}")


class _BoundedInfo(tarfile.TarInfo):
    # tarfile's own comments name _proc_member as the place for a subclass to hook into.
    def _proc_member(self, archive: BoundedTarFile) -> tarfile.TarInfo:
        archive.limits.admit(self)
        return super()._proc_member(archive)

    def _refuse_sparse(self, member: tarfile.TarInfo, pax_headers: dict[str, str],
                       *_rest: Any) -> None:
        raise UnsafeArchiveMember(pax_headers.get("GNU.sparse.name", member.name), _SPARSE)

    # The pax forms of sparse files: version 1.0 would read a map of any length from the data.
    _proc_gnusparse_00 = _proc_gnusparse_01 = _proc_gnusparse_10 = _refuse_sparse


class BoundedTarFile(tarfile.TarFile):
    """tarfile's reading, with every size a header declares checked before it is read."""

    tarinfo = _BoundedInfo

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Set first: opening reads the first header.
        self.limits = HeaderLimits()
        super().__init__(*args, **kwargs)


def check_header(member: tarfile.TarInfo) -> None:
    """Refuses a member whose name or link target is too long, or whose size is negative
    (a pax record may set both after the header was admitted)."""
    if member.size < 0:
        raise BackupCorrupted(f"tar stream: member {member.name[:200]} has a negative size")
    for what, text in (("name", member.name), ("link target", member.linkname)):
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_NAME_BYTES:
            raise ArchiveLimitExceeded(
                f"a member {what} of {size} bytes ({text[:64]!r}...), at most {MAX_NAME_BYTES}")


def safe_parts(name: str) -> list[str]:
    """The folders and name of a member below the restore folder; refuses any way out."""
    if "\0" in name:
        raise UnsafeArchiveMember(repr(name), "the name contains a NUL byte")
    if name.startswith("/"):
        raise UnsafeArchiveMember(name, "absolute name")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveMember(name, "the name contains ..")
    if not parts:
        raise UnsafeArchiveMember(name, "the name is the restore folder itself")
    return parts


def member_kind(member: tarfile.TarInfo) -> str:
    if member.isreg():
        return "file"
    if member.isdir():
        return "dir"
    if member.issym():
        return "symlink"
    raise UnsafeArchiveMember(member.name, _REFUSED_TYPES.get(member.type, "unsupported type"))


def check_link_target(name: str, path: str, target: str) -> None:
    """Refuses a symlink unless its target stays inside the restore folder.

    `..` is allowed only before the first folder name of a target: after a name it climbs from
    wherever that name leads, and when the name is (or later becomes) another symlink, no
    check of this link alone can tell where that is.
    """
    if not target or "\0" in target or target.startswith("/"):
        raise UnsafeArchiveMember(name, "symlink target is empty, absolute or holds a NUL")
    depth, descended = path.count("/"), False
    for part in target.split("/"):
        if part == ".." and descended:
            raise UnsafeArchiveMember(name, "symlink target climbs after a folder name")
        if part == "..":
            depth -= 1
        descended = descended or part not in ("", ".", "..")
        if depth < 0:
            raise UnsafeArchiveMember(name, "symlink target leaves the restore folder")
