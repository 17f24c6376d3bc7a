"""Replacing an object in a real S3 server (SeaweedFS): the old bytes go from a versioned
bucket, and an object under lock is never rewritten."""

from __future__ import annotations

import pytest

from common.backupfile.io.s3 import S3Storage
from common.errors import BackupLocked
from tests.contracts.storage import NAME, read_all, store_bytes
from tests.integration.objectstore import unique_bucket_name
from tests.integration.test_s3_storage import options_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def versioned_bucket(object_store):
    # Object lock turns versioning on; no retention is set unless the storage asks for one.
    return object_store.create_bucket(unique_bucket_name("h4ver"), object_lock=True)


def versions_of(storage: S3Storage) -> list[str]:
    answer = storage.client.list_object_versions(Bucket=storage.options.bucket,
                                                 Prefix=storage.options.prefix + NAME)
    return [v["VersionId"] for v in [*answer.get("Versions", []),
                                     *answer.get("DeleteMarkers", [])]]


def test_a_replace_in_a_versioned_bucket_leaves_only_the_new_version(object_store,
                                                                     versioned_bucket):
    storage = S3Storage(options_for(object_store, versioned_bucket))
    store_bytes(storage, NAME, b"old header, payload")
    with storage.replace(NAME) as out:
        out.write(b"new header, payload")
    assert read_all(storage, NAME) == b"new header, payload"
    assert len(versions_of(storage)) == 1


def test_a_rewritten_head_in_a_versioned_bucket_leaves_only_the_new_version(
        object_store, versioned_bucket):
    storage = S3Storage(options_for(object_store, versioned_bucket))
    store_bytes(storage, NAME, b"old-head|", b"p" * (6 << 20))
    storage.rewrite_head(NAME, len(b"old-head|"), b"NEW-HEAD|")
    assert read_all(storage, NAME) == b"NEW-HEAD|" + b"p" * (6 << 20)
    assert len(versions_of(storage)) == 1


def test_an_object_under_lock_is_not_replaced(object_store, versioned_bucket):
    storage = S3Storage(options_for(object_store, versioned_bucket, lock_mode="COMPLIANCE",
                                    lock_days=1))
    store_bytes(storage, NAME, b"kept")
    with pytest.raises(BackupLocked) as refused:
        storage.rewrite_head(NAME, 2, b"XX")
    assert refused.value.status == 409
    with pytest.raises(BackupLocked), storage.replace(NAME) as out:
        out.write(b"other")
    assert read_all(storage, NAME) == b"kept"
    assert len(versions_of(storage)) == 1
