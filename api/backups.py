"""/backups: generate (with a server- or client-chosen id) and list backups."""

from __future__ import annotations

import uuid

from flask import g, url_for
from flask.views import MethodView

from api import files
from api.auth import acting_caller, admin_required, gated_admin, settle_gate, write_gate
from api.blueprint import Blueprint
from api.media import RESPONSE_TYPE, document_response
from api.schemas import (
    ApiTaskSchema,
    BackupInfoSchema,
    BackupListQuerySchema,
    CookieQuerySchema,
    CookieSchema,
    NewBackupRequestSchema,
)
from api.services import app_services
from common import tasks
from common.backupfile.io.mirrored import MirroredStorage
from common.errors import BadUserInput

FILE_RESPONSE = {"description": "The backup file (byte ranges supported)."}
BINARY = {"type": "string", "format": "binary"}


blp = Blueprint("backups", __name__, url_prefix="/backups",
                description="Generate, list and download backups.")


def location(task_id: str) -> dict[str, str]:
    return {"Location": url_for("tasks.Task", task_id=task_id, _external=True)}


def _check_password(password: str | None) -> str | None:
    limit = app_services().settings.max_password_bytes
    if password is not None and len(password.encode()) > limit:
        raise BadUserInput(f"password is longer than {limit} bytes")
    return password or None


def start_backup(backup_id: str, body: dict):
    """Write the task row, counted against the quota, together with its message; the
    caller's session is checked in the same script when this process knows the token."""
    services = app_services()
    password, recipients = _check_password(body.get("password")), body.get("recipients")
    row = tasks.new_backup_task(acting_caller().user, backup_id,
                                encrypted=bool(password or recipients),
                                operation_id=g.get("operation_id"),
                                recipients=recipients or [], labels=body.get("labels"))
    created = services.starter.backup(row, backup_id, {"password": password or ""},
                                      gate=write_gate())
    settle_gate(created)
    if created.outcome != "created":  # a repeated client-chosen id: that backup's own task
        return services.store.get_task(created.task_id), 202, location(created.task_id)
    return document_response(created.document, 202, location(row.id))


@blp.route("")
class Backups(MethodView):
    @gated_admin
    @blp.arguments(NewBackupRequestSchema, required=False)
    @blp.response(202, ApiTaskSchema, content_type=RESPONSE_TYPE)
    def post(self, body: dict):
        """Generate a new backup. Administrators only; returns the task to poll."""
        return start_backup(str(uuid.uuid4()), body)

    @admin_required
    @blp.arguments(BackupListQuerySchema, location="query")
    @blp.response(200, BackupInfoSchema(many=True), content_type=RESPONSE_TYPE)
    def get(self, query: dict):
        """Stored backups, newest first. Only whole, stored backups are listed."""
        wanted = [text.partition("=")[::2] for text in query["label"]]
        mirrored = isinstance(app_services().storage, MirroredStorage)
        return [_with_copies(backup) if mirrored else backup
                for backup in app_services().store.list_backups()
                if all((backup.get("labels") or {}).get(k) == v for k, v in wanted)]


def _with_copies(backup: dict) -> dict:
    """Where the backup is held: the replica counts once its copy has the listed hash (a
    rekeyed backup's older copy does not)."""
    replica = backup.get("replicaHash") == backup.get("hash")
    return {**backup, "heldIn": ["primary", "replica"] if replica else ["primary"]}


@blp.route("/<uuid:backup_id>")
class Backup(MethodView):
    @gated_admin
    @blp.arguments(NewBackupRequestSchema, required=False)
    @blp.response(202, ApiTaskSchema, content_type=RESPONSE_TYPE)
    def post(self, body: dict, backup_id: uuid.UUID):
        """Generate a backup with a client-chosen id; repeating it returns the same task."""
        return start_backup(str(backup_id), body)

    @admin_required
    @blp.response(200, BINARY, description=FILE_RESPONSE["description"],
                  content_type="application/octet-stream")
    @blp.alt_response(206, schema=BINARY, content_type="application/octet-stream",
                      description="Part of the file, for a Range request.")
    def get(self, backup_id: uuid.UUID):
        """Download a backup: Content-Length, ETag, Content-Disposition, byte ranges."""
        return files.download(str(backup_id))

    @admin_required
    @blp.response(202, ApiTaskSchema, content_type=RESPONSE_TYPE)
    def delete(self, backup_id: uuid.UUID):
        """Delete a backup and free its space; a download in flight still completes."""
        task = files.delete_backup(str(backup_id))
        return task, 202, location(task.id)


@blp.route("/cookie/<uuid:backup_id>")
class BackupCookie(MethodView):
    @admin_required
    @blp.response(202, CookieSchema, content_type=RESPONSE_TYPE)
    def post(self, backup_id: uuid.UUID):
        """A one-time, short-lived cookie to download this backup without a token."""
        return files.issue_cookie(str(backup_id))

    @blp.arguments(CookieQuerySchema, location="query", as_kwargs=True)
    @blp.response(200, BINARY, description=FILE_RESPONSE["description"],
                  content_type="application/octet-stream")
    def get(self, backup_id: uuid.UUID, cookie: str):
        """Download with a cookie instead of X-VCAV-Auth; the cookie works once."""
        return files.download_with_cookie(str(backup_id), cookie)
