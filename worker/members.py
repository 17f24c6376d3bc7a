"""What makes a tar member safe to restore: its name, its type and, for a symlink, its target."""

from __future__ import annotations

import tarfile

from common.errors import UnsafeArchiveMember

_REFUSED_TYPES = {tarfile.LNKTYPE: "hard link", tarfile.CHRTYPE: "character device",
                  tarfile.BLKTYPE: "block device", tarfile.FIFOTYPE: "fifo"}


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
