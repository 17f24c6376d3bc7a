"""Backups in an S3-compatible object store.

A backup is written as a multipart upload of fixed-size parts, a few of them in flight at once,
so memory stays bounded whatever the backup's size. The object exists only once the upload is
completed, and completing is conditional (`If-None-Match: *`): a retried attempt never replaces
a stored backup. A failed or interrupted write aborts its upload; the reaper aborts uploads
that dead attempts left (`remove_orphans`). With object lock configured, each new object is
given a retention period, and the store itself refuses to delete it before then.

`replace` is the one unconditional write: a rekey's new file, or a second copy brought up to
date. It is refused while the object is under lock, and in a versioned bucket the versions it
supersedes are removed once it is complete, so that the old bytes (an old key's header) go.

Every call has a connect and a read timeout and a bounded number of retries; the store's
answers become the service's errors here, so callers see StorageUnavailable, not botocore.
"""

from __future__ import annotations

import errno
import io
import logging
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from common.backupfile.io.storage import (
    BackupStorage,
    OpenedFile,
    StoredObject,
    final_names,
    is_backup_file_name,
)
from common.errors import (
    BackupLocked,
    H4Error,
    StorageAccessDenied,
    StorageBucketMissing,
    StorageFailure,
    StorageQuotaExceeded,
    StorageUnavailable,
)

log = logging.getLogger("h4backup.storage")

MIB = 1 << 20
_READ_BUFFER = MIB
_DENIED = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                     "InvalidToken", "ExpiredToken", "403"})
_FULL = frozenset({"QuotaExceeded", "XMinioStorageFull", "XMinioAdminBucketQuotaExceeded",
                   "InsufficientStorage", "EntityTooLarge", "507"})
_MISSING = frozenset({"NoSuchKey", "NotFound", "404", "NoSuchVersion"})


@dataclass(frozen=True)
class S3Options:
    bucket: str
    endpoint: str | None = None  # None: AWS itself
    prefix: str = ""  # keys are prefix + file name
    region: str = "us-east-1"
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    lock_mode: str | None = None  # GOVERNANCE or COMPLIANCE: each new backup is retained
    lock_days: int = 0
    part_size: int = 8 * MIB
    parts_in_flight: int = 2
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    attempts: int = 3

    def __post_init__(self) -> None:
        if self.lock_mode not in (None, "GOVERNANCE", "COMPLIANCE"):
            raise ValueError("lock_mode is GOVERNANCE or COMPLIANCE")
        if self.part_size < 5 * MIB:
            raise ValueError("S3 parts other than the last are at least 5 MiB")

    @property
    def location(self) -> str:
        where = self.endpoint or "aws"
        return f"s3://{self.bucket}/{self.prefix} at {where}"


def make_client(options: S3Options) -> Any:
    """A client whose every call is bounded in time: connect, each read, and retries."""
    config = Config(
        region_name=options.region, connect_timeout=options.connect_timeout,
        read_timeout=options.read_timeout,
        retries={"max_attempts": options.attempts, "mode": "standard"},
        s3={"addressing_style": "path"}, max_pool_connections=options.parts_in_flight + 4)
    return boto3.session.Session().client(
        "s3", endpoint_url=options.endpoint, aws_access_key_id=options.access_key,
        aws_secret_access_key=options.secret_key, config=config)


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class S3Storage(BackupStorage):
    def __init__(self, options: S3Options, client: Any = None) -> None:
        self.options = options
        self.location = options.location
        self._client = client or make_client(options)

    # --- the interface ------------------------------------------------------------------------

    def prepare(self) -> None:
        try:
            with self.calling(missing_is_absent=True):
                self._client.head_bucket(Bucket=self.options.bucket)
        except FileNotFoundError:
            # HEAD answers carry no body, so no NoSuchBucket code: only the 404.
            raise StorageBucketMissing(self.options.bucket,
                                       self.options.endpoint or "aws") from None

    def create(self, name: str) -> MultipartWrite:
        return MultipartWrite(self, self._key(name))

    def replace(self, name: str) -> MultipartWrite:
        found = self.stat(name)
        if found is not None and found.locked_at(_ms(datetime.now(UTC))):
            assert found.locked_until_ms is not None
            until = datetime.fromtimestamp(found.locked_until_ms / 1000, UTC)
            raise BackupLocked(name.split(".", 1)[0], until.isoformat())
        return MultipartWrite(self, self._key(name), replace=True)

    @contextmanager
    def open(self, name: str) -> Iterator[OpenedFile]:
        with self.open_range(name, 0, None) as opened:
            yield opened

    @contextmanager
    def open_range(self, name: str, first: int, last: int | None) -> Iterator[OpenedFile]:
        """Bytes first..last (inclusive; to the end when last is None), as one stream."""
        wanted = {} if first == 0 and last is None else {
            "Range": f"bytes={first}-{'' if last is None else last}"}
        with self.calling(missing_is_absent=True):
            answer = self._client.get_object(Bucket=self.options.bucket, Key=self._key(name),
                                              **wanted)
        body = _BodyReader(answer["Body"], self.location)
        with io.BufferedReader(body, _READ_BUFFER) as stream:
            yield OpenedFile(stream, int(answer["ContentLength"]))

    def stat(self, name: str) -> StoredObject | None:
        try:
            with self.calling(missing_is_absent=True):
                head = self._client.head_object(Bucket=self.options.bucket, Key=self._key(name))
        except FileNotFoundError:
            return None
        until = head.get("ObjectLockRetainUntilDate")
        return StoredObject(name, int(head["ContentLength"]), _ms(head["LastModified"]),
                            _ms(until) if until else None)

    def delete(self, name: str) -> None:
        self._delete_key(self._key(name), name)

    def list(self) -> Iterator[StoredObject]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.options.bucket, Prefix=self.options.prefix)
        with self.calling():
            for page in pages:
                for item in page.get("Contents", []):
                    name = item["Key"][len(self.options.prefix):]
                    if is_backup_file_name(name):
                        yield StoredObject(name, int(item["Size"]), _ms(item["LastModified"]))

    def remove_leftovers(self, backup_id: str) -> int:
        removed = 0
        for name in final_names(backup_id):
            key = self._key(name)
            removed += len(self._abort_uploads(key, older_than=None))
            if self.stat(name) is not None:
                self._delete_key(key, name, leave_locked=True)
                removed += 1
        return removed

    def remove_orphans(self, older_than_seconds: float) -> list[str]:
        aborted = self._abort_uploads(self.options.prefix, older_than=older_than_seconds)
        return [key[len(self.options.prefix):] for key in aborted]

    # --- shared with the writer ----------------------------------------------------------------

    @contextmanager
    def calling(self, missing_is_absent: bool = False) -> Iterator[None]:
        """The store's failures as the service's errors; a missing object, when asked for,
        as FileNotFoundError, the way a folder says it."""
        try:
            yield
        except ClientError as error:
            code = error_code(error)
            if missing_is_absent and code in _MISSING:
                raise FileNotFoundError(errno.ENOENT, code) from None
            raise self.translate(error) from None
        except NoCredentialsError:
            raise StorageAccessDenied(self.location, "no credentials were given") from None
        except BotoCoreError as error:
            raise StorageUnavailable(self.location, str(error)) from None

    def translate(self, error: ClientError) -> H4Error:
        code = error_code(error)
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        message = error.response.get("Error", {}).get("Message") or code
        if code in _DENIED:
            return StorageAccessDenied(self.location, code)
        if code == "NoSuchBucket":
            return StorageBucketMissing(self.options.bucket, self.options.endpoint or "aws")
        if code in _FULL or status == 507:
            return StorageQuotaExceeded(self.location, message)
        if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "InternalError"):
            return StorageUnavailable(self.location, f"{code}: {message}")
        return StorageFailure(f"{code}: {message}")

    @property
    def client(self) -> Any:
        return self._client

    def lock_arguments(self) -> dict[str, Any]:
        """What makes a new object retained, when a retention is configured."""
        if not self.options.lock_mode or self.options.lock_days <= 0:
            return {}
        until = datetime.now(UTC) + timedelta(days=self.options.lock_days)
        return {"ObjectLockMode": self.options.lock_mode, "ObjectLockRetainUntilDate": until}

    # --- inside ----------------------------------------------------------------------------

    def _key(self, name: str) -> str:
        # Names come from the catalogue; one that is no plain file name is never a key here.
        if not name or "/" in name or name.startswith(".") or "\\" in name:
            raise FileNotFoundError(errno.ENOENT, name)
        return self.options.prefix + name

    def _versions(self, key: str) -> list[dict[str, Any]]:
        """Every version of key and its delete markers, as the store lists them (VersionId
        "null" when unversioned, IsLatest on the current one)."""
        found = []
        pages = self._client.get_paginator("list_object_versions").paginate(
            Bucket=self.options.bucket, Prefix=key)
        with self.calling():
            for page in pages:
                for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                    if item["Key"] == key:
                        found.append(item)
        return found

    def _delete_key(self, key: str, name: str, leave_locked: bool = False) -> None:
        """Remove every version of key, so the bytes really go; a version still under object
        lock is BackupLocked, or with leave_locked only hidden behind a delete marker."""
        for item in self._versions(key):
            until = self._delete_version(key, item["VersionId"])
            if until is None:
                continue
            if not leave_locked:
                raise BackupLocked(name.split(".", 1)[0], until.isoformat())
            log.warning("%s stays in the store until %s (object lock)", key, until)
            with self.calling():
                self._client.delete_object(Bucket=self.options.bucket, Key=key)
            return

    def remove_older_versions(self, key: str, current: str | None) -> None:
        """Remove every version of key but the current one, once a replace is complete; a
        version that the store keeps under lock stays, with a warning."""
        for version in self._superseded(key, current):
            if self._delete_version(key, version) is not None:
                log.warning("an older version of %s stays in the store (object lock)", key)

    def _delete_version(self, key: str, version: str) -> datetime | None:
        """Delete one version of key: None when it is gone, or the date until which the
        store's object lock keeps it. A refusal for any other reason is raised."""
        try:
            with self.calling(missing_is_absent=True):
                self._client.delete_object(Bucket=self.options.bucket, Key=key,
                                           VersionId=version)
        except FileNotFoundError:
            return None
        except StorageAccessDenied:
            until = self._retained_until(key, version)
            if until is None:
                raise
            return until
        return None

    def _superseded(self, key: str, current: str | None) -> list[str]:
        """The versions of key other than current; other than the latest when the store did
        not name the version it stored (it does not in an unversioned bucket, which keeps
        only the latest anyway)."""
        return [item["VersionId"] for item in self._versions(key)
                if not (item["VersionId"] == current if current is not None
                        else item.get("IsLatest", False))]

    def _retained_until(self, key: str, version: str) -> datetime | None:
        try:
            with self.calling(missing_is_absent=True):
                head = self._client.head_object(Bucket=self.options.bucket, Key=key,
                                                 VersionId=version)
        except (FileNotFoundError, H4Error):
            return None
        until = head.get("ObjectLockRetainUntilDate")
        return until if until and until > datetime.now(UTC) else None

    def _abort_uploads(self, prefix: str, older_than: float | None) -> list[str]:
        """Abort unfinished uploads under prefix (exactly the key, when older_than is None)."""
        deadline = None if older_than is None else datetime.now(UTC) - timedelta(
            seconds=older_than)
        aborted = []
        pages = self._client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.options.bucket, Prefix=prefix)
        with self.calling():
            for page in pages:
                for upload in page.get("Uploads", []):
                    if older_than is None and upload["Key"] != prefix:
                        continue
                    if deadline is not None and upload["Initiated"] >= deadline:
                        continue
                    self._client.abort_multipart_upload(
                        Bucket=self.options.bucket, Key=upload["Key"],
                        UploadId=upload["UploadId"])
                    aborted.append(upload["Key"])
        return aborted


class MultipartWrite:
    """Context manager giving a writer whose bytes become the object only on success."""

    def __init__(self, storage: S3Storage, key: str, replace: bool = False) -> None:
        self._storage, self._key = storage, key
        self._options = storage.options
        # Replacing: no condition on the completion, and the superseded versions go after it.
        self._replace = replace
        self._condition = {} if replace else {"IfNoneMatch": "*"}
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._pending: deque[Future[dict[str, Any]]] = deque()
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> MultipartWrite:
        if not self._replace and self._storage.stat(
                self._key[len(self._options.prefix):]) is not None:
            raise StorageFailure(f"{self._key} already exists")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        try:
            if exc_type is None:
                self._commit()
        except BaseException:
            self._abort()
            raise
        finally:
            self._close_pool()
        if exc_type is not None:
            self._abort()

    def write(self, data: bytes) -> int:
        self._buffer += data
        size = self._options.part_size
        while len(self._buffer) >= size:
            # One copy into the part, not two: a slice of a bytearray is a copy already.
            with memoryview(self._buffer) as view:
                part = bytes(view[:size])
            del self._buffer[:size]
            self._send(part)
        return len(data)

    def flush(self) -> None:
        """Nothing to do: parts go as they fill, the last one on commit."""

    # --- inside ----------------------------------------------------------------------------

    def _send(self, part: bytes) -> None:
        """Upload one part on the pool; with the pool full, wait for the oldest first."""
        if self._upload_id is None:
            self._start()
        while len(self._pending) >= self._options.parts_in_flight:
            self._parts.append(self._wait(self._pending.popleft()))
        number = len(self._parts) + len(self._pending) + 1
        assert self._pool is not None
        self._pending.append(self._pool.submit(self._upload_part, number, part))

    def _start(self) -> None:
        with self._storage.calling():
            answer = self._storage.client.create_multipart_upload(
                Bucket=self._options.bucket, Key=self._key, **self._storage.lock_arguments())
        self._upload_id = answer["UploadId"]
        self._pool = ThreadPoolExecutor(self._options.parts_in_flight,
                                        thread_name_prefix="s3-part")

    def _upload_part(self, number: int, data: bytes) -> dict[str, Any]:
        with self._storage.calling():
            answer = self._storage.client.upload_part(
                Bucket=self._options.bucket, Key=self._key, UploadId=self._upload_id,
                PartNumber=number, Body=data)
        return {"PartNumber": number, "ETag": answer["ETag"]}

    def _wait(self, future: Future[dict[str, Any]]) -> dict[str, Any]:
        # Each request is bounded by the client's timeouts and retries; this bound only
        # guards against a call that somehow outlives them all.
        options = self._options
        longest = (options.connect_timeout + options.read_timeout) * options.attempts + 30
        return future.result(timeout=longest)

    def _commit(self) -> None:
        if self._upload_id is None:
            self._put_whole()
            return
        if self._buffer or not (self._parts or self._pending):
            self._send(bytes(self._buffer))
            self._buffer.clear()
        while self._pending:
            self._parts.append(self._wait(self._pending.popleft()))
        try:
            with self._storage.calling():
                answer = self._storage.client.complete_multipart_upload(
                    Bucket=self._options.bucket, Key=self._key, UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts}, **self._condition)
        except StorageFailure as error:
            raise self._exists_or(error) from None
        self._upload_id = None
        self._stored(answer)

    def _put_whole(self) -> None:
        """A backup smaller than one part goes in one request, conditional as well."""
        try:
            with self._storage.calling():
                answer = self._storage.client.put_object(
                    Bucket=self._options.bucket, Key=self._key, Body=bytes(self._buffer),
                    **self._condition, **self._storage.lock_arguments())
        except StorageFailure as error:
            raise self._exists_or(error) from None
        self._stored(answer)

    def _stored(self, answer: dict[str, Any]) -> None:
        if self._replace:
            self._storage.remove_older_versions(self._key, answer.get("VersionId"))

    def _exists_or(self, error: StorageFailure) -> StorageFailure:
        if "PreconditionFailed" in error.msg:
            return StorageFailure(f"{self._key} already exists")
        return error

    def _abort(self) -> None:
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        if self._upload_id is None:
            return
        try:
            with self._storage.calling():
                self._storage.client.abort_multipart_upload(
                    Bucket=self._options.bucket, Key=self._key, UploadId=self._upload_id)
        except H4Error as error:
            # The reaper aborts it later (remove_orphans); the task's own error matters more.
            log.warning("could not abort the upload of %s: %s", self._key, error.msg)
        self._upload_id = None

    def _close_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class _BodyReader(io.RawIOBase):
    """An object's body as a raw stream; its network failures become OSErrors, which the
    readers of a backup already report as storage errors."""

    def __init__(self, body: Any, location: str) -> None:
        self._body, self._location = body, location

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._body.read(len(buffer))
        except (BotoCoreError, OSError) as error:
            raise OSError(errno.EIO, f"reading from {self._location}: {error}") from None
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)

