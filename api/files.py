"""Backup files leaving the service: downloads (whole or by range), cookies, and deletion."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Response, current_app, g, send_file

from api.auth import current_caller
from common import tasks
from common.errors import BackupNotFound, InvalidDownloadCookie, StorageFailure
from common.secrecy import new_token, token_digest

log = logging.getLogger("h4backup.api")

COOKIE_TTL_SECONDS = 60


def _services():
    return current_app.extensions["h4"]


def stored_backup(backup_id: str) -> tuple[dict, Path]:
    """A listed backup and its file; anything else is BackupNotFound."""
    services = _services()
    backup = services.store.get_backup(backup_id)
    if backup is None or not _safe_name(backup.get("file", "")):
        raise BackupNotFound(backup_id)
    path = services.settings.backup_dir / backup["file"]
    if not path.is_file():
        raise BackupNotFound(backup_id)
    return backup, path


def _safe_name(name: str) -> bool:
    return bool(name) and Path(name).name == name and not name.startswith(".")


def download(backup_id: str) -> Response:
    """The stored bytes, with Content-Length, an ETag from the SHA-512, and byte ranges."""
    backup, path = stored_backup(backup_id)
    # The file is opened before the response starts: a delete during the download unlinks
    # the name, and the downloader still receives every byte of the open file.
    response = send_file(path, mimetype="application/octet-stream", as_attachment=True,
                         download_name=backup["file"], conditional=True,
                         etag=_etag(backup["hash"]), last_modified=backup["generatedOn"] / 1000)
    response.headers["X-Content-SHA512"] = backup["hash"]
    return response


def _etag(backup_hash: str) -> str:
    return backup_hash.removeprefix("SHA-512:").replace(":", "").lower()


def issue_cookie(backup_id: str) -> dict[str, str]:
    stored_backup(backup_id)
    cookie = new_token()
    _services().store.put_cookie(token_digest(cookie), backup_id, COOKIE_TTL_SECONDS)
    return {"cookie": cookie}


def download_with_cookie(backup_id: str, cookie: str) -> Response:
    granted = _services().store.take_cookie(token_digest(cookie)) if cookie else None
    if granted != backup_id:
        raise InvalidDownloadCookie()
    return download(backup_id)


def delete_backup(backup_id: str) -> dict:
    """Unlist the backup, then free its disk space; the task records how that went."""
    services = _services()
    stored_backup(backup_id)
    row = tasks.new_task(current_caller().user, "deleteBackup", "backup", backup_id,
                         operation_id=g.get("operation_id"))
    services.store.create_task(row)
    backup = services.store.unlist_backup(backup_id)
    if backup is None:
        services.store.fail(row["id"], BackupNotFound(backup_id).to_api_error())
    else:
        _remove_file(services, row["id"], services.settings.backup_dir / backup["file"])
    return services.store.get_task(row["id"])


def _remove_file(services, task_id: str, path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.error("could not remove %s: %s", path.name, exc.strerror)
        services.store.fail(task_id, StorageFailure(exc.strerror).to_api_error())
        return
    services.store.succeed(task_id, None, None)
