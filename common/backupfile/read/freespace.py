"""Keeping a restore from filling its filesystem.

A backup file is small and what it declares can be huge: a few hundred KiB of zstd expand to
terabytes of zeros. So every member is charged before it is written, in whole blocks of its
declared size plus a directory entry, and one inode; once the charges pass what was free when
the restore began, less a reserve, the restore stops with RestoreTooLarge. The free space is
looked at again as the restore goes, in case others fill the disk meanwhile. What is written
never exceeds what was charged: a member's bytes are read by its declared size.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from common.errors import RestoreTooLarge

# What a restore leaves free of its filesystem, for the programs that share it: a twentieth,
# at most 1 GiB of space and 100,000 inodes.
_RESERVE_SHARE = 20
_RESERVE_BYTES_MAX = 1 << 30
_RESERVE_INODES_MAX = 100_000
# A directory entry, at most: a name of 255 bytes and its fields.
_ENTRY_BYTES = 264
# Free space is looked at again this often, in case others fill the disk meanwhile.
_RECHECK_BYTES = 64 << 20
_RECHECK_MEMBERS = 4096


class SpaceGuard:
    """Charges each member to the restore filesystem's free space before it is written."""

    def __init__(self, root: Path) -> None:
        self._root = root
        found = os.statvfs(root)
        self._block = found.f_frsize or 4096
        self._reserve = min(found.f_blocks * self._block // _RESERVE_SHARE, _RESERVE_BYTES_MAX)
        self._reserve_inodes = min(found.f_files // _RESERVE_SHARE, _RESERVE_INODES_MAX)
        self._bytes_left = found.f_bavail * self._block - self._reserve
        # Filesystems without an inode table (btrfs) report none at all.
        self._inodes_left = found.f_favail - self._reserve_inodes if found.f_files else None
        self._charged = self._members = self._unchecked_bytes = 0

    def charge(self, member: tarfile.TarInfo) -> None:
        """Called before member is written; RestoreTooLarge once the charges pass the budget."""
        blocks = -(-member.size // self._block) if member.isreg() else 1
        self._charged += blocks * self._block + _ENTRY_BYTES
        self._members += 1
        if self._charged > self._bytes_left:
            raise self._too_large(f"its members so far need {_mib(self._charged)} and "
                                  f"{_mib(self._bytes_left)} may be used")
        if self._inodes_left is not None and self._members > self._inodes_left:
            raise self._too_large(f"its members so far need {self._members} inodes and "
                                  f"{self._inodes_left} may be used")
        if self._members % _RECHECK_MEMBERS == 0:
            self._recheck()

    def wrote(self, size: int) -> None:
        """Called as file bytes go to the disk; now and then, the free space is looked at."""
        self._unchecked_bytes += size
        if self._unchecked_bytes >= _RECHECK_BYTES:
            self._unchecked_bytes = 0
            self._recheck()

    def _recheck(self) -> None:
        found = os.statvfs(self._root)
        free = found.f_bavail * self._block
        if free < self._reserve or (found.f_files and found.f_favail < self._reserve_inodes):
            raise self._too_large(f"its filesystem has fallen to {_mib(free)} and "
                                  f"{found.f_favail} inodes free, under the reserve")

    def _too_large(self, detail: str) -> RestoreTooLarge:
        return RestoreTooLarge(self._root, detail, msg=(
            f"The restore does not fit in {self._root}: {detail} (a reserve of "
            f"{_mib(self._reserve)} and {self._reserve_inodes} inodes stays free)."))


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"
