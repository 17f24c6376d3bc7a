"""Error codes and messages: ApiError bodies in the API, task errors in the workers.

Each condition is a small class named for it, with a fixed code, an HTTP status and a message
template whose positional fields are the ApiError `args`, as vCDA does.
"""

from __future__ import annotations

from typing import Any


class H4Error(Exception):
    """Base of every error the service reports; renders as a vCDA ApiError."""

    code = "GeneralServerFailure"
    status = 500
    template = "An internal error occurred."

    def __init__(self, *args: object, msg: str | None = None) -> None:
        self.args_list = [str(a) for a in args]
        self.msg = msg if msg is not None else self._format()
        super().__init__(self.msg)

    def _format(self) -> str:
        try:
            return self.template.format(*self.args_list)
        except (IndexError, KeyError):
            return self.template

    def to_api_error(self, stacktrace: str = "") -> dict[str, Any]:
        return {"args": self.args_list, "code": self.code, "msg": self.msg,
                "stacktrace": stacktrace}


# --- request errors -------------------------------------------------------------------------

class BadUserInput(H4Error):
    code, status, template = "BadUserInput", 400, "Invalid input: {0}"


class NotAuthenticated(H4Error):
    code, status, template = "NotAuthenticated", 401, "Authentication required."


class InvalidCredentials(H4Error):
    code, status, template = "NotAuthenticated", 401, "Invalid credentials."


class InvalidDownloadCookie(H4Error):
    code, status, template = "InvalidDownloadCookie", 401, "Invalid or expired download cookie."


class Forbidden(H4Error):
    code, status, template = "Forbidden", 403, "Permission denied."


class BackupNotFound(H4Error):
    code, status, template = "BackupNotFound", 404, "Backup {0} not found."


class TaskNotFound(H4Error):
    code, status, template = "TaskNotFound", 404, "Task {0} not found."


class RouteNotFound(H4Error):
    code, status, template = "NotFound", 404, "No such resource: {0}"


class SiteNotFound(H4Error):
    code, status, template = "SiteNotFound", 404, "Site {0} not found."


class MethodNotAllowed(H4Error):
    code, status, template = "MethodNotAllowed", 405, "Method {0} is not allowed on {1}."


class NotAcceptable(H4Error):
    code, status = "NotAcceptable", 406
    template = "Cannot produce any of the accepted media types: {0}"


class Conflict(H4Error):
    code, status, template = "Conflict", 409, "{0}"


class RequestTimeout(H4Error):
    code, status, template = "RequestTimeout", 408, "The request body arrived too slowly: {0}"


class PayloadTooLarge(H4Error):
    code, status, template = "PayloadTooLarge", 413, "Request body is larger than {0} bytes."


class UnsupportedMediaType(H4Error):
    code, status, template = "UnsupportedMediaType", 415, "Unsupported request media type: {0}"


class RangeNotSatisfiable(H4Error):
    code, status, template = "RangeNotSatisfiable", 416, "Range not satisfiable for size {0}."


class BackupQuotaExceeded(H4Error):
    code, status = "BackupQuotaExceeded", 409
    template = "Backup quota exceeded. Number of allowed backups: {0}, current backup count: {1}"


class TooManyRequests(H4Error):
    code, status, template = "TooManyRequests", 429, "Too many requests; retry in {0} seconds."

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.headers = {"Retry-After": str(retry_after)}


class TooManyTasks(H4Error):
    code, status = "TooManyTasks", 429
    template = "User {0} already runs {1} tasks; wait for one to finish."

    def __init__(self, user: str, running: int) -> None:
        super().__init__(user, running)
        self.headers = {"Retry-After": "10"}


class ServiceUnavailable(H4Error):
    code, status, template = "ServiceUnavailable", 503, "Service temporarily unavailable: {0}"


class GeneralServerFailure(H4Error):
    code, status, template = "GeneralServerFailure", 500, "An internal error occurred."


# --- health findings (ApiErrors inside a CloudHealthInfo) -----------------------------------

class DatabaseUnavailable(H4Error):
    code, status, template = "DatabaseUnavailable", 503, "The task store does not answer: {0}"


class WorkerUnavailable(H4Error):
    code, status, template = "WorkerUnavailable", 503, "No worker answered a ping: {0}"


class HealthCheckFailed(H4Error):
    code, status, template = "HealthCheckFailed", 500, "The health check could not run: {0}"


# --- task failures (end a task FAILED with this code) ---------------------------------------

class SourceUnavailable(H4Error):
    code, status, template = "SourceUnavailable", 500, "Backup source {0} is not readable: {1}"


class InsufficientStorage(H4Error):
    code, status = "InsufficientStorage", 507
    template = "Not enough space to store the backup in {0}."


class StorageFailure(H4Error):
    code, status, template = "StorageFailure", 500, "Could not write the backup file: {0}"


class StorageUnavailable(H4Error):
    code, status = "StorageUnavailable", 503
    template = "The backup store at {0} does not answer: {1}"


class StorageAccessDenied(H4Error):
    code, status = "StorageAccessDenied", 503
    template = ("The backup store at {0} refused the service's credentials ({1}); check "
                "H4_S3_ACCESS_KEY_FILE and H4_S3_SECRET_KEY_FILE, or AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY.")


class StorageBucketMissing(H4Error):
    code, status = "StorageBucketMissing", 503
    template = "The bucket {0} does not exist at {1}; create it, or set H4_S3_BUCKET."


class StorageQuotaExceeded(H4Error):
    code, status = "StorageQuotaExceeded", 507
    template = "The backup store at {0} is full or over its quota: {1}"


class BackupLocked(H4Error):
    code, status = "BackupLocked", 409
    template = ("Backup {0} is under object lock until {1}: it cannot be deleted or rewritten "
                "before then.")


class BackupBusy(H4Error):
    code, status = "BackupBusy", 409
    template = "Backup {0} is being rewritten by task {1}; try again once that task has ended."


class BackupNotEncrypted(H4Error):
    code, status = "BackupNotEncrypted", 409
    template = "Backup {0} is not encrypted: it has no key to change."


class NoReplica(H4Error):
    code, status = "NoReplica", 409
    template = "No replica store is configured: set H4_REPLICA to keep a second copy."


class PasswordUnavailable(H4Error):
    code, status = "PasswordUnavailable", 409
    template = ("The task's password is no longer available ({0}); start the task again with "
                "its password.")


class WorkerLost(H4Error):
    code, status, template = "WorkerLost", 500, "The worker running this task was lost."


class TaskCanceled(H4Error):
    code, status, template = "TaskCanceled", 409, "The task was canceled."


class WrongPassword(H4Error):
    code, status, template = "WrongPassword", 400, "The password does not open this backup."


class BackupCorrupted(H4Error):
    code, status, template = "BackupCorrupted", 422, "The backup file is damaged: {0}"


class UnsafeArchiveMember(H4Error):
    code, status, template = "UnsafeArchiveMember", 422, "Refused archive member {0}: {1}"


class ArchiveLimitExceeded(H4Error):
    code, status = "ArchiveLimitExceeded", 422
    template = "The backup file exceeds a limit on what a worker reads from it: {0}"


class RestoreTooLarge(H4Error):
    code, status = "RestoreTooLarge", 507
    template = "The restore does not fit in {0}: {1}"


# --- task warnings (non-fatal, listed on the task) ------------------------------------------

class FileChanged(H4Error):
    code, status, template = "FileChanged", 200, "File {0} changed while it was read."


class FileVanished(H4Error):
    code, status, template = "FileVanished", 200, "File {0} disappeared before it was read."


class FileUnreadable(H4Error):
    code, status, template = "FileUnreadable", 200, "File {0} could not be read: {1}"


class FileSkipped(H4Error):
    code, status, template = "FileSkipped", 200, "File {0} was skipped: {1}"
