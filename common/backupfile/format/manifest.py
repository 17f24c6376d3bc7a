"""The manifest that ends every archive: `h4backup-manifest.jsonl`, one ASCII JSON object a line.

    {"format": "h4backup-manifest", "version": 2, "backupId": "<id>",
     "createdAt": <ms since epoch>, "sources": ["<name>", ...], "fileHash": "blake3"}
    {"path": "<member name>", "type": "file" | "dir" | "symlink", "size": <bytes stored>,
     "mode": <permission bits>, "mtime": <seconds since epoch>,
     "blake3": "<hex of the bytes stored>" (files only), "target": "<link target>" (symlinks)}

It lists every member before it in archive order, so a verify or a restore can prove that an
archive is complete and that every file's bytes are the ones read at backup time. Version 1,
written before, has no "fileHash" and gives each file's "sha256" instead (format/filehash.py)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from common.backupfile.format.filehash import CURRENT, KNOWN, SHA256
from common.errors import ArchiveLimitExceeded, BackupCorrupted

MANIFEST_NAME = "h4backup-manifest.jsonl"
MANIFEST_FORMAT = "h4backup-manifest"
MANIFEST_VERSION = 2
# Written before the manifest named its file hash: every file's digest is SHA-256.
_VERSION_1 = 1
# A line holds one member's path and link target, each at most 4096 bytes (MAX_NAME_BYTES in
# format/members.py) and at worst 6 ASCII bytes per byte once escaped: 48 KiB, plus the rest.
MAX_LINE = 64 << 10


@dataclass(frozen=True)
class ManifestHeader:
    backup_id: str
    created_at: int
    sources: tuple[str, ...]
    file_hash: str = SHA256  # the key of each file's digest (format/filehash.py)


@dataclass(frozen=True)
class ManifestEntry:
    path: str
    type: str
    size: int
    mode: int
    mtime: int
    digest: str | None = None  # hex, of the header's file_hash (files only)
    target: str | None = None


def header_line(backup_id: str, created_at: int, sources: list[str],
                file_hash: str = CURRENT) -> bytes:
    return encode_line({"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
                        "backupId": backup_id, "createdAt": created_at, "sources": sources,
                        "fileHash": file_hash})


def encode_line(item: dict[str, object]) -> bytes:
    # ASCII JSON: names that are not valid UTF-8 survive as \\udcXX escapes.
    return json.dumps(item, ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n"


def read_manifest(
    fileobj: BinaryIO, max_lines: int | None = None
) -> tuple[ManifestHeader, Iterator[ManifestEntry]]:
    """Parses a manifest; entries are read lazily, a line at a time, so huge manifests stay
    out of memory. A line longer than MAX_LINE, or a line past max_lines, is refused."""
    lines = _lines(fileobj, max_lines)
    header = _parse_line(next(lines, b""), 1)
    parsed = _header_from(header)
    return parsed, _parse_entries(lines, parsed.file_hash)


def _header_from(header: dict) -> ManifestHeader:
    version = header.get("version")
    if header.get("format") != MANIFEST_FORMAT or version not in (_VERSION_1, MANIFEST_VERSION):
        raise BackupCorrupted("manifest header is not an h4backup manifest version 1 or 2")
    try:
        file_hash = SHA256 if version == _VERSION_1 else str(header["fileHash"])
        if file_hash not in KNOWN:
            raise ValueError(f"unknown file hash {file_hash[:40]!r}")
        return ManifestHeader(str(header["backupId"]), int(header["createdAt"]),
                              tuple(str(name) for name in header["sources"]), file_hash)
    except (KeyError, TypeError, ValueError) as error:
        raise BackupCorrupted(f"manifest header: {error}") from error


def _lines(fileobj: BinaryIO, max_lines: int | None) -> Iterator[bytes]:
    for number in itertools.count(1):
        line = fileobj.readline(MAX_LINE + 1)
        if not line:
            return
        if len(line) > MAX_LINE:
            raise ArchiveLimitExceeded(f"manifest line {number} is longer than {MAX_LINE} bytes")
        if max_lines is not None and number > max_lines:
            raise ArchiveLimitExceeded(f"manifest lines: more than {max_lines}")
        yield line


def _parse_entries(lines: Iterator[bytes], file_hash: str) -> Iterator[ManifestEntry]:
    for line_number, line in enumerate(lines, start=2):
        if line.strip():
            yield _entry_from(_parse_line(line, line_number), line_number, file_hash)


def _entry_from(item: dict, line_number: int, file_hash: str) -> ManifestEntry:
    try:
        return ManifestEntry(str(item["path"]), str(item["type"]), int(item["size"]),
                             int(item["mode"]), int(item["mtime"]),
                             item.get(file_hash), item.get("target"))
    except (KeyError, TypeError, ValueError) as error:
        raise BackupCorrupted(f"manifest line {line_number}: {error}") from error


def _parse_line(line: bytes, line_number: int) -> dict:
    try:
        item = json.loads(line)
    except ValueError as error:
        raise BackupCorrupted(f"manifest line {line_number}: {error}") from error
    if not isinstance(item, dict):
        raise BackupCorrupted(f"manifest line {line_number}: not a JSON object")
    return item
