"""The manifest that ends every archive: `h4backup-manifest.jsonl`, one ASCII JSON object a line.

    {"format": "h4backup-manifest", "version": 1, "backupId": "<id>",
     "createdAt": <ms since epoch>, "sources": ["<name>", ...]}
    {"path": "<member name>", "type": "file" | "dir" | "symlink", "size": <bytes stored>,
     "mode": <permission bits>, "mtime": <seconds since epoch>,
     "sha256": "<hex of the bytes stored>" (files only), "target": "<link target>" (symlinks)}

It lists every member before it in archive order, so a verify or a restore can prove that an
archive is complete and that every file's bytes are the ones read at backup time.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from common.errors import ArchiveLimitExceeded, BackupCorrupted

MANIFEST_NAME = "h4backup-manifest.jsonl"
MANIFEST_FORMAT = "h4backup-manifest"
MANIFEST_VERSION = 1
# A line holds one member's path and link target, each at most 4096 bytes (MAX_NAME_BYTES in
# format/members.py) and at worst 6 ASCII bytes per byte once escaped: 48 KiB, plus the rest.
MAX_LINE = 64 << 10


@dataclass(frozen=True)
class ManifestHeader:
    backup_id: str
    created_at: int
    sources: tuple[str, ...]


@dataclass(frozen=True)
class ManifestEntry:
    path: str
    type: str
    size: int
    mode: int
    mtime: int
    sha256: str | None = None
    target: str | None = None


def header_line(backup_id: str, created_at: int, sources: list[str]) -> bytes:
    return encode_line({"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
                        "backupId": backup_id, "createdAt": created_at, "sources": sources})


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
    if header.get("format") != MANIFEST_FORMAT or header.get("version") != MANIFEST_VERSION:
        raise BackupCorrupted("manifest header is not an h4backup manifest version 1")
    try:
        parsed = ManifestHeader(str(header["backupId"]), int(header["createdAt"]),
                                tuple(str(name) for name in header["sources"]))
    except (KeyError, TypeError, ValueError) as error:
        raise BackupCorrupted(f"manifest header: {error}") from error
    return parsed, _parse_entries(lines)


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


def _parse_entries(lines: Iterator[bytes]) -> Iterator[ManifestEntry]:
    for line_number, line in enumerate(lines, start=2):
        if line.strip():
            yield _entry_from(_parse_line(line, line_number), line_number)


def _entry_from(item: dict, line_number: int) -> ManifestEntry:
    try:
        return ManifestEntry(str(item["path"]), str(item["type"]), int(item["size"]),
                             int(item["mode"]), int(item["mtime"]),
                             item.get("sha256"), item.get("target"))
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
