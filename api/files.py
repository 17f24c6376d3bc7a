"""Backup files leaving the service: downloads (whole or by range), cookies, and deletion;
and the framing check of a file arriving by import, before it may take a quota slot."""

from __future__ import annotations

import io
import logging
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import zstandard
from flask import Response, g, send_file

from api.auth import current_caller
from api.services import app_services
from api.streaming import stream_backup
from common import tasks
from common.backupfile.format.age import (
    AGE_MAGIC,
    AgeError,
    AgeNoMatch,
    AgeReader,
    generate_x25519_identity,
)
from common.backupfile.io.hashing import plain_hex
from common.backupfile.io.mirrored import MirroredStorage
from common.backupfile.io.storage import BackupStorage, StoredObject
from common.clock import now_ms
from common.errors import (
    BackupBusy,
    BackupLocked,
    BackupNotFound,
    BadUserInput,
    H4Error,
    InvalidDownloadCookie,
    StorageFailure,
)
from common.secrecy import new_token, token_digest
from common.tasks import TaskRow

log = logging.getLogger("h4backup.api")

COOKIE_TTL_SECONDS = 60
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# A compressed zstd block holds at most 128 KiB, so this much of a plain backup holds the
# first block, and in it the first tar header.
_ZSTD_HEAD = 256 << 10
# An age payload: a 16-byte nonce, then chunks of 64 KiB sealed with a 16-byte tag each.
_AGE_NONCE, _AGE_TAG = 16, 16
_AGE_SEALED_CHUNK = (64 << 10) + _AGE_TAG


def stored_backup(backup_id: str) -> tuple[dict, StoredObject]:
    """A listed backup and its stored file; anything else is BackupNotFound."""
    services = app_services()
    backup = services.store.get_backup(backup_id)
    if backup is None or not _safe_name(backup.get("file", "")):
        raise BackupNotFound(backup_id)
    stored = services.storage.stat(backup["file"])
    if stored is None:
        raise BackupNotFound(backup_id)
    return backup, stored


def _safe_name(name: str) -> bool:
    return bool(name) and Path(name).name == name and not name.startswith(".")


def download(backup_id: str) -> Response:
    """The stored bytes, with Content-Length, an ETag from the SHA-512, and byte ranges."""
    backup, stored = stored_backup(backup_id)
    storage, found = _holder(app_services().storage, backup)
    stored = found or stored
    folder = storage.local_folder()
    if folder is None:
        response = stream_backup(storage, stored, _etag(backup["hash"]), backup["file"],
                                 backup["generatedOn"])
    else:
        # The file is opened before the response starts: a delete during the download
        # unlinks the name, and the downloader still receives every byte of the open file.
        response = send_file(folder / backup["file"], mimetype="application/octet-stream",
                             as_attachment=True, download_name=backup["file"],
                             conditional=True, etag=_etag(backup["hash"]),
                             last_modified=backup["generatedOn"] / 1000)
    response.headers["X-Content-SHA512"] = backup["hash"]
    return response


def _holder(storage: BackupStorage, backup: dict) -> tuple[BackupStorage, StoredObject | None]:
    """The store to serve the backup from, and its file there when it looked: with a replica,
    the one that holds it with its listed size (the primary first)."""
    if isinstance(storage, MirroredStorage):
        return storage.holder_of(backup["file"], backup.get("size"))
    return storage, None


def _etag(backup_hash: str) -> str:
    return plain_hex(backup_hash)


def issue_cookie(backup_id: str) -> dict[str, str]:
    stored_backup(backup_id)
    cookie = new_token()
    app_services().store.put_cookie(token_digest(cookie), backup_id, COOKIE_TTL_SECONDS)
    return {"cookie": cookie}


def download_with_cookie(backup_id: str, cookie: str) -> Response:
    granted = app_services().store.take_cookie(token_digest(cookie)) if cookie else None
    if granted != backup_id:
        raise InvalidDownloadCookie()
    return download(backup_id)


def delete_backup(backup_id: str) -> TaskRow | None:
    """Unlist the backup, then free its space; the task records how that went. A backup under
    object lock is refused (409 BackupLocked) and stays listed."""
    services = app_services()
    _, stored = stored_backup(backup_id)
    refuse_locked(backup_id, stored)
    refuse_held(backup_id)
    row = tasks.new_task(current_caller().user, "deleteBackup", "backup", backup_id,
                         operation_id=g.get("operation_id"))
    services.starter.record(row)
    try:
        backup = services.store.unlist_backup(backup_id)
    except BackupBusy as busy:  # a rekey took it since the check above
        services.store.fail(row.id, busy.to_api_error())
        raise
    if backup is None:
        services.store.fail(row.id, BackupNotFound(backup_id).to_api_error())
    else:
        _remove_file(services, row.id, backup)
    return services.store.get_task(row.id)


def refuse_held(backup_id: str) -> None:
    """409 BackupBusy while a task rewrites the backup's file (a rekey)."""
    holder = app_services().store.backup_holder(backup_id)
    if holder is not None:
        raise BackupBusy(backup_id, holder)


def refuse_locked(backup_id: str, stored: StoredObject) -> None:
    """409 BackupLocked while the store's object lock holds the file."""
    if stored.locked_at(now_ms()):
        until = datetime.fromtimestamp(stored.locked_until_ms / 1000, UTC)
        raise BackupLocked(backup_id, until.isoformat(timespec="seconds"))


def _remove_file(services, task_id: str, backup: dict) -> None:
    """Remove the file and its record; when the storage refuses, the backup is listed again,
    so that the catalogue still says what the storage holds."""
    try:
        services.storage.delete_backup(backup["id"], backup["file"])
    except (OSError, H4Error) as exc:
        error = exc if isinstance(exc, H4Error) else StorageFailure(exc.strerror or str(exc))
        log.error("could not remove %s: %s", backup["file"], error.msg)
        services.store.relist_backup(backup)
        services.store.fail(task_id, error.to_api_error())
        return
    services.store.succeed(task_id, None, None)


# --- imported files --------------------------------------------------------------------------

class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class UploadHead:
    """The first bytes of an upload, read and checked, and what they say of the rest."""

    data: bytes
    encrypted: bool
    header_size: int = 0  # of the age header; 0 for a plain backup

    def check_size(self, size: int) -> None:
        """Refuses an age file whose payload cannot be whole: a nonce, then sealed chunks,
        the last of them shorter (empty only if it is the only one)."""
        if not self.encrypted:
            return
        sealed = size - self.header_size - _AGE_NONCE
        last = sealed % _AGE_SEALED_CHUNK
        if sealed < _AGE_TAG or 0 < last < _AGE_TAG or (last == _AGE_TAG < sealed):
            raise _not_a_backup("its age payload is cut short")


def read_upload_head(stream: Readable) -> UploadHead:
    """Reads and checks the start of an upload: an age v1 header, or a zstd frame that opens
    with a tar header. BadUserInput for anything else."""
    first = _read_up_to(stream, len(AGE_MAGIC))
    if first == AGE_MAGIC:
        return _age_head(first, stream)
    if first.startswith(ZSTD_MAGIC):
        return _zstd_head(first + _read_up_to(stream, _ZSTD_HEAD - len(first)))
    raise _not_a_backup("it is neither an age file nor a zstd stream")


def _age_head(first: bytes, stream: Readable) -> UploadHead:
    recording = _Recording(first, stream)
    # The reader parses and checks the whole header before it looks for a stanza to open;
    # with an identity made up on the spot none opens, so AgeNoMatch means a sound header.
    try:
        AgeReader(recording, identities=[generate_x25519_identity()[0]])
    except AgeNoMatch:
        pass
    except (AgeError, ValueError) as error:
        raise _not_a_backup(f"its age header is malformed: {error}") from None
    head = bytes(recording.taken)
    # Stanza bodies are base64 and stanza lines start "-> ": the first "\n---" is the MAC line.
    mac_line = head.index(b"\n---") + 1
    return UploadHead(head, True, head.index(b"\n", mac_line) + 1)


def _zstd_head(head: bytes) -> UploadHead:
    try:
        zstandard.get_frame_parameters(head)
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(head)) as plain:
            first_block = _read_up_to(plain, tarfile.BLOCKSIZE)
    except zstandard.ZstdError as error:
        raise _not_a_backup(f"its zstd frame is malformed: {error}") from None
    try:
        tarfile.TarInfo.frombuf(first_block, "utf-8", "surrogateescape")
    except tarfile.HeaderError as error:
        raise _not_a_backup(f"it does not start with a tar header: {error}") from None
    return UploadHead(head, False)


class _Recording:
    """The upload as the age reader reads it: first the bytes already read, then the stream;
    everything it takes is kept, to be stored with the rest."""

    def __init__(self, first: bytes, stream: Readable) -> None:
        self.taken = bytearray(first)
        self._replay, self._stream = first, stream

    def read(self, size: int) -> bytes:
        if self._replay:
            data, self._replay = self._replay[:size], self._replay[size:]
            return data
        data = self._stream.read(size)
        self.taken += data
        return data


def _read_up_to(stream: Readable, size: int) -> bytes:
    """size bytes, fewer only at the end: a request stream may return less per read."""
    parts, wanted = [], size
    while wanted > 0 and (data := stream.read(wanted)):
        parts.append(data)
        wanted -= len(data)
    return b"".join(parts)


def _not_a_backup(reason: str) -> BadUserInput:
    return BadUserInput(f"the upload is not a backup file: {reason}")
