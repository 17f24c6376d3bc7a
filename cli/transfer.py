"""Downloading a backup: streamed into a private temporary file beside the target, hashed on
the way, renamed into place only when the SHA-512 matches. A partial file is kept for a
resumed download (HTTP Range) unless its bytes turn out wrong."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import requests

from cli.errors import FAILED, NOT_FOUND, UNREACHABLE, USAGE, ClientError
from cli.output import Output
from cli.progress import ByteProgress
from cli.remote import Api
from common.backupfile.io.hashing import format_sha512, plain_hex

CHUNK_BYTES = 1 << 20
HASH_HEADER = "X-Content-SHA512"


@dataclass
class Target:
    folder: Path
    name: str | None  # None: take the server's file name
    force: bool = False

    def path(self, suggested: str) -> Path:
        return self.folder / (self.name or suggested)


def vcda_hash(hex_digest: str) -> str:
    """`SHA-512:AB:CD:...`, the catalog's way of writing a digest."""
    return format_sha512(bytes.fromhex(hex_digest))


def resolve_target(output_option: str | None, force: bool) -> Target:
    if output_option is None:
        return Target(Path.cwd(), None, force)
    path = Path(output_option).expanduser()
    if path.is_dir():
        return Target(path, None, force)
    if not path.parent.is_dir():
        raise ClientError(f"no such folder: {path.parent}", USAGE)
    return Target(path.parent, path.name, force)


def listed_hash(api: Api, backup_id: str) -> str:
    for backup in api.backups():
        if backup.get("id") == backup_id:
            return backup["hash"]
    raise ClientError(f"BackupNotFound: backup {backup_id} is not listed", NOT_FOUND)


class HashMismatch(ClientError):
    def __init__(self, message: str, resumed: bool) -> None:
        super().__init__(message, FAILED)
        self.resumed = resumed


def download(api: Api, output: Output, backup_id: str, target: Target,
             verify: bool) -> dict[str, Any]:
    """The summary of a finished, checked download; raises ClientError otherwise."""
    expected = listed_hash(api, backup_id) if verify else None
    part = target.folder / f".{backup_id}.part"
    try:
        return _fetch(api, output, backup_id, target, part, expected)
    except HashMismatch as exc:
        if not exc.resumed:
            raise
    # The kept partial bytes were wrong (not the server's): one fresh, whole download.
    output.note("the resumed download did not match; downloading the whole file again")
    return _fetch(api, output, backup_id, target, part, expected)


def _fetch(api: Api, output: Output, backup_id: str, target: Target, part: Path,
           expected: str | None) -> dict[str, Any]:
    response, offset = _open(api, backup_id, part, expected)
    with response:
        final = target.path(_file_name(response, backup_id))
        _refuse_existing(final, target.force)
        digest = _receive(response, part, offset, output)
    hashes = [h for h in (expected, response.headers.get(HASH_HEADER)) if h]
    _check(part, digest, hashes, resumed=offset > 0)
    _settle(part, final)
    return {"message_type": "summary", "action": "download", "backup_id": backup_id,
            "path": str(final), "bytes": final.stat().st_size, "hash": vcda_hash(digest),
            "verified_against_catalog": expected is not None, "hash_checks": len(hashes),
            "resumed_from": offset}


def _open(api: Api, backup_id: str, part: Path,
          expected: str | None) -> tuple[requests.Response, int]:
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    if offset and expected:
        # If the stored file changed since the partial download, the server sends it whole.
        headers["If-Range"] = f'"{plain_hex(expected)}"'
    response = api.call("GET", f"/backups/{backup_id}", expect=(200, 206, 416), stream=True,
                        headers=headers)
    if response.status_code == 206:
        return response, offset
    part.unlink(missing_ok=True)  # not a prefix of this backup, or ranges unsupported
    if response.status_code == 416:
        response.close()
        return _open(api, backup_id, part, expected)
    return response, 0


def _file_name(response: requests.Response, backup_id: str) -> str:
    header = Message()
    header["Content-Disposition"] = response.headers.get("Content-Disposition", "")
    name = Path(header.get_filename() or "").name
    return name if name and not name.startswith(".") else f"{backup_id}.backup"


def _refuse_existing(final: Path, force: bool) -> None:
    if final.exists() and not force:
        raise ClientError(f"{final} exists; remove it, choose another -o, or use --force", USAGE)


def _receive(response: requests.Response, part: Path, offset: int, output: Output) -> str:
    """Append the body to the part file; the digest covers the bytes already there too."""
    hasher = _hash_of(part) if offset else hashlib.sha512()
    total = offset + int(response.headers["Content-Length"]) \
        if "Content-Length" in response.headers else None
    progress = ByteProgress(output, "download", total, offset)
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)  # a backup may be unencrypted: private even if resumed from elsewhere
    with os.fdopen(fd, "wb") as sink:
        try:
            _copy(response, sink, hasher, progress)
        finally:
            progress.close()
        sink.flush()
        os.fsync(sink.fileno())
    return hasher.hexdigest()


def _copy(response: requests.Response, sink: Any, hasher: Any, progress: ByteProgress) -> None:
    try:
        for chunk in response.iter_content(CHUNK_BYTES):
            sink.write(chunk)
            hasher.update(chunk)
            progress.advance(len(chunk))
    except requests.RequestException:
        raise ClientError("the download broke off; the partial file is kept: run the same "
                          "command again to resume", UNREACHABLE) from None


def _hash_of(path: Path) -> Any:
    hasher = hashlib.sha512()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            hasher.update(chunk)
    return hasher


def _check(part: Path, digest: str, expected: list[str], resumed: bool) -> None:
    """Every hash offered must match; on any mismatch the bytes are removed."""
    wrong = [h for h in expected if plain_hex(h) != digest]
    if wrong:
        part.unlink(missing_ok=True)
        raise HashMismatch(f"SHA-512 mismatch: expected {wrong[0]}, received "
                           f"{vcda_hash(digest)}; nothing was kept", resumed)


def _settle(part: Path, final: Path) -> None:
    os.replace(part, final)
    folder = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a crash
    finally:
        os.close(folder)
