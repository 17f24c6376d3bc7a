"""The hash of each file's bytes that the manifest records: BLAKE3, or SHA-256 in older backups.

BLAKE3 because every backup and every restore hashes every file byte once, and BLAKE3 does it
3.4x faster than SHA-256 even where SHA-256 has its CPU instructions (4.2 against 1.2 GB/s on
one core of a 2-core Xeon, in memory; bench/backup_speed.py, reading the files too, measures
0.5 against 1.15 CPU s per GiB): 0.6 CPU s less per GiB, about a tenth of a backup's CPU.
Both release the GIL on large buffers. Backups written before keep their SHA-256, which
restores and verifies still check.

A reader hashes each file as it streams past, long before the manifest that ends the archive
says which hash it listed, so the tar stream names the hash up front: its first header is a
PAX global header holding one `comment` record, `h4backup file-hash=blake3`. GNU tar, bsdtar
and Python's tarfile all pass a comment over in silence. A stream without it is an older one,
hashed with SHA-256. The manifest names the hash again (format/manifest.py), and a reader
compares the hash's name along with each digest, so a stream and a manifest that disagree on
it are a damaged backup, never a file left unchecked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Protocol

import blake3

from common.errors import BackupCorrupted

BLAKE3 = "blake3"
SHA256 = "sha256"
# What new backups use; SHA256 only reads older ones.
CURRENT = BLAKE3
KNOWN = (BLAKE3, SHA256)
_COMMENT = "h4backup file-hash="


class FileHasher(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> object: ...

    def hexdigest(self) -> str: ...


def new_hasher(name: str) -> FileHasher:
    """A fresh hash of the named kind."""
    if name == BLAKE3:
        return blake3.blake3()
    if name == SHA256:
        return hashlib.sha256()
    raise BackupCorrupted(f"unknown file hash {name[:40]!r}")


def global_records(name: str) -> dict[str, str]:
    """The PAX global header records that name the file hash at the start of the tar stream."""
    return {"comment": _COMMENT + name}


def from_global_records(records: Mapping[str, str]) -> str:
    """The file hash a tar stream names in its global header; SHA-256 when it names none."""
    comment = records.get("comment", "")
    if not comment.startswith(_COMMENT):
        return SHA256
    name = comment.removeprefix(_COMMENT)
    if name not in KNOWN:
        raise BackupCorrupted(f"the archive names an unknown file hash {name[:40]!r}")
    return name
