"""The object-store backend against a real S3 server (SeaweedFS): the storage contract every
backend keeps, and what only an object store has: parts, conditional writes, unfinished
uploads, object lock, and its failures as the service's errors."""

from __future__ import annotations

import uuid

import pytest

from common.backupfile.io.s3 import MIB, S3Options, S3Storage
from common.errors import (
    BackupLocked,
    StorageAccessDenied,
    StorageBucketMissing,
    StorageFailure,
    StorageUnavailable,
)
from tests.contracts.storage import NAME, StorageContract, read_all, store_bytes
from tests.integration.objectstore import unique_bucket_name

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bucket(object_store):
    return object_store.create_bucket(unique_bucket_name("h4"))


@pytest.fixture(scope="module")
def locked_bucket(object_store):
    return object_store.create_bucket(unique_bucket_name("h4lock"), object_lock=True)


def options_for(object_store, bucket: str, **changes) -> S3Options:
    fields = {"bucket": bucket, "endpoint": object_store.endpoint,
              "prefix": f"run-{uuid.uuid4().hex[:8]}/", "region": object_store.region,
              "access_key": object_store.access_key, "secret_key": object_store.secret_key,
              "part_size": 5 * MIB, "attempts": 1, "connect_timeout": 2, "read_timeout": 10}
    return S3Options(**{**fields, **changes})


@pytest.fixture
def storage(object_store, bucket):
    """A storage of its own: a fresh prefix in the shared bucket."""
    storage = S3Storage(options_for(object_store, bucket))
    storage.prepare()
    return storage


def unfinished_uploads(storage: S3Storage) -> list[str]:
    answer = storage.client.list_multipart_uploads(Bucket=storage.options.bucket,
                                                   Prefix=storage.options.prefix)
    return [upload["Key"] for upload in answer.get("Uploads", [])]


class TestS3Storage(StorageContract):
    pass


def test_a_backup_larger_than_a_part_is_stored_in_parts_and_reads_back(storage):
    data = bytes(range(256)) * (70 * 1024)  # 17.5 MiB: three full parts and a short one
    store_bytes(storage, NAME, *(data[i:i + MIB] for i in range(0, len(data), MIB)))
    assert read_all(storage, NAME) == data
    head = storage.client.head_object(Bucket=storage.options.bucket,
                                      Key=storage.options.prefix + NAME)
    assert head["ETag"].endswith('-4"')


def test_an_exact_multiple_of_the_part_size_is_stored_whole(storage):
    data = b"p" * (10 * MIB)
    store_bytes(storage, NAME, data)
    assert storage.stat(NAME).size == 10 * MIB


def test_the_object_is_invisible_until_the_upload_completes(storage):
    with storage.create(NAME) as out:
        out.write(b"x" * (6 * MIB))  # one part already uploaded
        assert storage.stat(NAME) is None
    assert storage.stat(NAME).size == 6 * MIB


def test_a_failed_multipart_write_leaves_no_unfinished_upload(storage):
    with pytest.raises(RuntimeError), storage.create(NAME) as out:
        out.write(b"x" * (11 * MIB))
        raise RuntimeError("the pipeline failed")
    assert storage.stat(NAME) is None
    assert unfinished_uploads(storage) == []


def test_a_writer_that_completes_after_another_stored_the_name_fails_and_keeps_the_first(
        storage):
    """Two attempts at one backup, both past the existence check, the first completing
    first: the second's conditional completion is refused and its upload aborted. (Truly
    simultaneous completions are not serialized by SeaweedFS 4.48; the task lease keeps two
    attempts of one backup from ever running at once.)"""
    second = storage.create(NAME)
    second.__enter__().write(b"b" * (6 * MIB))  # a part uploaded, not yet completed
    with storage.create(NAME) as early:
        early.write(b"a" * (6 * MIB))
    with pytest.raises(StorageFailure, match="already exists"):
        second.__exit__(None, None, None)
    assert read_all(storage, NAME) == b"a" * (6 * MIB)
    assert unfinished_uploads(storage) == []


def test_uploads_a_dead_attempt_left_are_aborted_as_orphans(storage):
    key = storage.options.prefix + NAME
    storage.client.create_multipart_upload(Bucket=storage.options.bucket, Key=key)
    assert storage.remove_orphans(3600) == []  # too young: it may belong to a living writer
    assert storage.remove_orphans(0) == [NAME]
    assert unfinished_uploads(storage) == []


def test_leftovers_include_an_unfinished_upload_of_that_backup(storage):
    key = storage.options.prefix + "b-1.tar.zst"
    storage.client.create_multipart_upload(Bucket=storage.options.bucket, Key=key)
    assert storage.remove_leftovers("b-1") == 1
    assert unfinished_uploads(storage) == []


def test_a_locked_backup_refuses_deletion_and_stays_whole(object_store, locked_bucket):
    storage = S3Storage(options_for(object_store, locked_bucket, lock_mode="COMPLIANCE",
                                    lock_days=1))
    store_bytes(storage, NAME, b"kept")
    assert storage.stat(NAME).locked_until_ms is not None
    with pytest.raises(BackupLocked) as refused:
        storage.delete(NAME)
    assert refused.value.status == 409
    assert read_all(storage, NAME) == b"kept"


def test_deleting_in_a_versioned_bucket_removes_every_version(object_store, locked_bucket):
    storage = S3Storage(options_for(object_store, locked_bucket))
    store_bytes(storage, NAME, b"gone for good")
    storage.delete(NAME)
    versions = storage.client.list_object_versions(Bucket=locked_bucket,
                                                   Prefix=storage.options.prefix)
    assert versions.get("Versions", []) == [] and versions.get("DeleteMarkers", []) == []


def test_an_unreachable_store_is_storage_unavailable(object_store, bucket):
    storage = S3Storage(options_for(object_store, bucket, endpoint="http://127.0.0.1:9"))
    with pytest.raises(StorageUnavailable) as failed:
        storage.prepare()
    assert failed.value.status == 503


def test_a_wrong_secret_is_storage_access_denied(object_store, bucket):
    storage = S3Storage(options_for(object_store, bucket, secret_key="not-the-secret"))
    with pytest.raises(StorageAccessDenied):
        store_bytes(storage, NAME, b"x")


def test_a_missing_bucket_is_storage_bucket_missing(object_store):
    storage = S3Storage(options_for(object_store, unique_bucket_name("absent")))
    with pytest.raises(StorageBucketMissing):
        storage.prepare()
    with pytest.raises(StorageBucketMissing):
        store_bytes(storage, NAME, b"x")


def test_the_secret_key_never_shows_in_the_options(object_store, bucket):
    options = options_for(object_store, bucket)
    assert object_store.secret_key not in repr(options)
