"""Bringing the Redis catalogue back in line with what the storage holds.

Redis is the fast index; the storage, with a record beside each backup, is the truth. After a
flush or a lost volume, every stored backup is listed again; a listed backup whose file is gone
is dropped, and the drop is logged. The reaper runs this whenever Redis has lost its mark that
the catalogue was checked, and `h4backup catalogue rebuild` runs it on demand.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from common.backupfile.io.hashing import sha512_of_stream
from common.backupfile.io.storage import BackupStorage, StoredObject, backup_id_of
from common.records import row_of, unrecorded_row
from common.store import Store

log = logging.getLogger("h4backup.catalogue")


@dataclass
class Reconciled:
    relisted: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    unrecorded: list[str] = field(default_factory=list)  # files with no usable record


def reconcile(store: Store, storage: BackupStorage, hash_unrecorded: bool = False) -> Reconciled:
    """List what the storage holds and Redis does not; drop what Redis lists and the storage
    lacks. A backup without a record is listed only with hash_unrecorded, which reads it."""
    report = Reconciled()
    # Redis first, the storage after: a backup's file is stored before it is listed, so every
    # row read here has its file in the listing below, unless the file is really gone.
    pending = store.pending_backups()
    rows = store.list_backups()
    stored = {obj.name: obj for obj in storage.list()}
    _drop_missing(store, rows, stored, pending, report)
    listed = {row["id"] for row in rows}
    for obj in stored.values():
        backup_id = backup_id_of(obj.name)
        if backup_id and backup_id not in listed and backup_id not in pending:
            _relist(store, storage, backup_id, obj, hash_unrecorded, report)
    store.mark_catalogue_checked()
    return report


def _drop_missing(store: Store, rows: list[dict], stored: dict[str, StoredObject],
                  pending: set[str], report: Reconciled) -> None:
    for row in rows:
        if row.get("file") in stored or row["id"] in pending:
            continue
        if store.unlist_unless_held(row["id"]) is not None:
            log.warning("backup %s is listed but its file %s is gone from the storage; "
                        "dropped from the catalogue", row["id"], row.get("file"))
            report.dropped.append(row["id"])


def _relist(store: Store, storage: BackupStorage, backup_id: str, obj: StoredObject,
            hash_unrecorded: bool, report: Reconciled) -> None:
    record = storage.read_record(backup_id)
    row = row_of(record, obj) if record else None
    if row is None:
        if not hash_unrecorded:
            report.unrecorded.append(backup_id)
            return
        row = unrecorded_row(backup_id, obj, _sha512(storage, obj.name))
    if store.relist_backup(row):
        log.info("backup %s is in the storage but was not listed; listed again", backup_id)
        report.relisted.append(backup_id)


def _sha512(storage: BackupStorage, name: str) -> str:
    with storage.open(name) as opened:
        return sha512_of_stream(opened.stream)
