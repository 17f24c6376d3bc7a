"""The catalogue record kept beside each backup, and the listing row Redis keeps of it.

The record is what survives losing Redis: with it, a rebuild lists the backup again exactly as
it was (hash, size, kind, who made it and how it is encrypted). It holds no secret: for a
passphrase backup it says only that there is one; for recipients, their public keys.
"""

from __future__ import annotations

from typing import Any

from common.backupfile.format.manifest import MANIFEST_VERSION
from common.backupfile.io.storage import StoredObject, backup_file_name, backup_id_of

RECORD_FORMAT = "h4backup-record"
RECORD_VERSION = 1
KINDS = ("manual", "scheduled", "imported")
# The listing row's fields, each as the record names it.
_ROW_FIELDS = ("id", "generatedOn", "hash", "file", "size", "taskId", "files", "sourceBytes",
               "kind", "labels")


def record_of(row: dict[str, Any], *, user: str, operation_id: str,
              recipients: list[str] | tuple[str, ...] = (), zstd_level: int | None = None,
              ) -> dict[str, Any]:
    """The record of a backup about to be listed with this row."""
    return {"format": RECORD_FORMAT, "version": RECORD_VERSION,
            **{name: row[name] for name in _ROW_FIELDS if name in row},
            "user": user, "operationID": operation_id,
            "encryption": _encryption(bool(int(row.get("encrypted") or 0)), recipients),
            "archiveVersion": MANIFEST_VERSION, "zstdLevel": zstd_level}


def rekeyed_record(record: dict[str, Any], hash_: str, size: int,
                   recipients: tuple[str, ...]) -> dict[str, Any]:
    """The record of a backup whose key was changed: its new hash and size, and what opens it
    now (the new recipients, or a passphrase)."""
    return {**record, "hash": hash_, "size": size, "encryption": _encryption(True, recipients)}


def _encryption(encrypted: bool, recipients: list[str] | tuple[str, ...]) -> dict[str, Any]:
    if recipients:
        return {"type": "recipients", "recipients": list(recipients)}
    return {"type": "passphrase" if encrypted else "none"}


def row_of(record: dict[str, Any], stored: StoredObject) -> dict[str, Any] | None:
    """The listing row a record gives for the file the storage holds; None when the record
    does not describe that file (another backup's, or another size)."""
    if record.get("format") != RECORD_FORMAT or record.get("file") != stored.name:
        return None
    if record.get("id") != backup_id_of(stored.name):
        return None
    if record.get("size") != stored.size or not _well_formed(record):
        return None
    row = {name: record[name] for name in _ROW_FIELDS if name in record}
    row["encrypted"] = int(record["encryption"].get("type") != "none")
    if row.get("kind") not in KINDS:
        row["kind"] = "manual"
    return row


def _well_formed(record: dict[str, Any]) -> bool:
    """The fields a listing needs, of the types it needs: a record is read back from storage
    that others may have written to."""
    return (isinstance(record.get("id"), str) and isinstance(record.get("generatedOn"), int)
            and isinstance(record.get("hash"), str) and record["hash"].startswith("SHA-512:")
            and isinstance(record.get("encryption"), dict)
            and all(isinstance(record.get(n, 0), int) for n in ("files", "sourceBytes"))
            and _string_map(record.get("labels", {})))


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def unrecorded_row(backup_id: str, stored: StoredObject, hash_: str) -> dict[str, Any]:
    """The row of a backup file with no record (written before records existed): what the
    file itself tells. Listed as manual, so that no retention rule deletes it."""
    encrypted = stored.name == backup_file_name(backup_id, True)
    return {"id": backup_id, "generatedOn": stored.modified_ms, "hash": hash_,
            "file": stored.name, "size": stored.size, "encrypted": int(encrypted),
            "kind": "manual"}
