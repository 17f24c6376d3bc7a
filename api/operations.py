"""Beyond vCDA: restore, verify, re-key and copy a stored backup, import one made elsewhere."""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import replace

from flask import g, request
from flask.views import MethodView

from api import files
from api.auth import admin_required, current_caller
from api.backups import location
from api.blueprint import Blueprint
from api.media import RESPONSE_TYPE
from api.schemas import (
    ApiTaskSchema,
    ImportQuerySchema,
    OpenBackupRequestSchema,
    RekeyRequestSchema,
)
from api.services import app_services
from common import tasks
from common.backupfile.io.hashing import format_sha512
from common.backupfile.io.mirrored import MirroredStorage
from common.backupfile.io.storage import backup_file_name
from common.clock import now_ms
from common.errors import (
    BackupNotEncrypted,
    BadUserInput,
    H4Error,
    NoReplica,
    PayloadTooLarge,
    StorageFailure,
)
from common.records import record_of

log = logging.getLogger("h4backup.api")

blp = Blueprint("operations", __name__, url_prefix="/backups",
                description="Restore, verify, re-key, copy and import backups (beyond vCDA 4.5).")

IMPORT_BLOCK = 1 << 20


def start_worker_task(kind: str, backup_id: str, secret: dict[str, str]):
    """A restore or verify task for a listed backup; its key travels sealed, like a password."""
    services = app_services()
    files.stored_backup(backup_id)
    row = tasks.new_task(current_caller().user, kind, "backup", backup_id,
                         operation_id=g.get("operation_id"), backup_id=backup_id)
    services.starter.task(row, secret)
    return services.store.get_task(row.id), 202, location(row.id)


@blp.route("/<uuid:backup_id>/restore")
class Restore(MethodView):
    @admin_required
    @blp.arguments(OpenBackupRequestSchema, required=False)
    @blp.response(202, ApiTaskSchema, content_type=RESPONSE_TYPE)
    def post(self, body: dict, backup_id: uuid.UUID):
        """Restore into a new folder under the restore root; result RestoreInfo."""
        return start_worker_task("restore", str(backup_id), body)


@blp.route("/<uuid:backup_id>/verify")
class Verify(MethodView):
    @admin_required
    @blp.arguments(OpenBackupRequestSchema, required=False)
    @blp.response(202, ApiTaskSchema, content_type=RESPONSE_TYPE)
    def post(self, body: dict, backup_id: uuid.UUID):
        """Check the stored bytes against the catalogue hash; with the key, every file too."""
        return start_worker_task("verify", str(backup_id), body)


@blp.route("/<uuid:backup_id>/rekey")
class Rekey(MethodView):
    @admin_required
    @blp.arguments(RekeyRequestSchema)
    @blp.response(202, ApiTaskSchema, content_type=RESPONSE_TYPE)
    def post(self, body: dict, backup_id: uuid.UUID):
        """Change the key of an encrypted backup without re-compressing it: only the age
        header is rewritten; result RekeyInfo with the new SHA-512."""
        return start_rekey(str(backup_id), body)


def start_rekey(backup_id: str, body: dict):
    """Refused at once when it could not succeed: a plain backup, one under object lock, one
    another task is rewriting. The worker checks the last again while it holds the backup."""
    services = app_services()
    listed, stored = files.stored_backup(backup_id)
    if not int(listed.get("encrypted") or 0):
        raise BackupNotEncrypted(backup_id)
    files.refuse_locked(backup_id, stored)
    files.refuse_held(backup_id)
    row = replace(tasks.new_task(current_caller().user, "rekey", "backup", backup_id,
                                 operation_id=g.get("operation_id"), backup_id=backup_id),
                  recipients=body.get("newRecipients"))
    services.starter.task(row, {"password": body.get("password"),
                                "identity": body.get("identity"),
                                "newPassword": body.get("newPassword")})
    return services.store.get_task(row.id), 202, location(row.id)


@blp.route("/<uuid:backup_id>/copy")
class Copy(MethodView):
    @admin_required
    @blp.response(202, ApiTaskSchema, content_type=RESPONSE_TYPE)
    def post(self, backup_id: uuid.UUID):
        """Copy the backup to the replica store now, checked by its SHA-512 as the replica
        holds it; result CopyInfo. Each new backup gets its copy by itself."""
        if not isinstance(app_services().storage, MirroredStorage):
            raise NoReplica()
        return start_worker_task("copy", str(backup_id), {})


@blp.route("/import")
class Import(MethodView):
    @admin_required
    @blp.arguments(ImportQuerySchema, location="query")
    @blp.response(202, ApiTaskSchema, content_type=RESPONSE_TYPE)
    def post(self, query: dict):
        """Upload a backup file (application/octet-stream); it is listed once stored whole."""
        return import_backup(query.get("hash"))


def import_backup(expected_hash: str | None):
    services = app_services()
    backup_id = str(uuid.uuid4())
    row = tasks.new_task(current_caller().user, "import", "backup", backup_id,
                         operation_id=g.get("operation_id"), backup_id=backup_id)
    services.starter.backup(row, backup_id, queue=False)  # stored here, by this request
    try:
        backup = _receive(services, backup_id, expected_hash)
        services.storage.write_record(backup_id, record_of(
            backup, user=row.user, operation_id=row.operation_id))
    except Exception as exc:
        error = exc if isinstance(exc, H4Error) else StorageFailure(type(exc).__name__)
        _forget(services, backup_id)
        services.store.fail(row.id, error.to_api_error())
        raise error from None
    info = {k: backup[k] for k in ("id", "generatedOn", "hash")}
    services.store.succeed(row.id, info, "BackupInfo", backup=backup)
    return services.store.get_task(row.id), 202, location(row.id)


def _forget(services, backup_id: str) -> None:
    """What a failed import stored goes with it; the reaper's sweep is there if this fails."""
    try:
        services.storage.remove_leftovers(backup_id)
    except (OSError, H4Error) as error:
        log.warning("could not remove what import %s left: %s", backup_id, error)


def _receive(services, backup_id: str, expected_hash: str | None) -> dict:
    """Stream the body to a temporary file beside its final name, hashing it as it comes."""
    services.storage.prepare()
    stream, digest = request.stream, hashlib.sha512()
    # Refused before anything is stored: a file that is no backup must not hold a quota slot.
    head = files.read_upload_head(stream)
    first, encrypted = head.data, head.encrypted
    name = backup_file_name(backup_id, encrypted)
    size = 0
    with services.storage.create(name) as out:
        for block in _blocks(first, stream):
            size += len(block)
            if size > services.settings.max_import_bytes:
                raise PayloadTooLarge(services.settings.max_import_bytes)
            digest.update(block)
            out.write(block)
        head.check_size(size)
        found = format_sha512(digest.digest())
        if expected_hash and found != expected_hash:
            raise BadUserInput("the uploaded file's SHA-512 is not the expected hash")
    stored = services.storage.stat(name)
    generated_on = stored.modified_ms if stored else now_ms()
    return {"id": backup_id, "generatedOn": generated_on, "hash": found,
            "file": name, "size": size, "encrypted": int(encrypted), "kind": "imported"}


def _blocks(first: bytes, stream):
    yield first
    while block := stream.read(IMPORT_BLOCK):
        yield block
