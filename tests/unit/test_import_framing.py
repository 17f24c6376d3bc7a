"""POST /backups/import takes only files framed as backups, and a refused one keeps no slot."""

from __future__ import annotations

import io
import os

import pytest
import zstandard

from common.backupfile.format.age import AgeWriter, encrypt_bytes, generate_x25519_identity
from tests.conftest import login
from tests.security.crafted import CraftedBackup

PASSWORD = "import-Pa$$"


def _upload(client, data: bytes):
    headers = {**login(client), "Content-Type": "application/octet-stream"}
    return client.post("/backups/import", data=data, headers=headers)


def _plain_backup() -> bytes:
    backup = CraftedBackup()
    backup.file("tree/a", b"a")
    backup.manifest()
    return backup.finish()


def _age_file(size: int) -> bytes:
    return encrypt_bytes(os.urandom(size), PASSWORD, work_factor=10)


def _age_header(data: bytes) -> bytes:
    return data[:data.index(b"\n---") + 1 + 48]  # the MAC line: "--- ", 43 base64, "\n"


AGE = _age_file(70_000)  # two chunks: one full, one short


@pytest.mark.parametrize(("data", "reason"), [
    (b"\x28\xb5\x2f\xfd", "zstd frame"),
    (zstandard.ZstdCompressor().compress(b"not a tar header" * 64), "tar header"),
    (zstandard.ZstdCompressor().compress(bytes(4096)), "tar header"),
    (b"age-encryption.org/v1\n" + bytes(range(256)) * 40, "age header"),
    (b"age-encryption.org/v1\n-> scrypt c2FsdA 10\n", "age header"),
    (_age_header(AGE), "payload is cut short"),
    (_age_header(AGE) + bytes(16), "payload is cut short"),
    (AGE[:len(_age_header(AGE)) + 16 + (64 << 10) + 16 + 10], "payload is cut short"),
    (AGE[:len(_age_header(AGE)) + 16 + (64 << 10) + 16 + 16], "payload is cut short"),
    (b"PK\x03\x04", "neither an age file nor a zstd stream"),
    (b"", "neither an age file nor a zstd stream"),
], ids=["zstd-magic-only", "zstd-of-text", "zstd-of-zeros", "age-garbage", "age-no-mac",
        "age-header-only", "age-nonce-only", "age-cut-in-a-tag", "age-empty-last-chunk",
        "zip", "empty"])
def test_an_upload_that_is_not_a_backup_is_refused_and_keeps_nothing(client, settings,
                                                                      data, reason):
    response = _upload(client, data)
    body = response.get_json()
    assert (response.status_code, body["code"]) == (400, "BadUserInput"), body
    assert "not a backup file" in body["msg"] and reason in body["msg"], body["msg"]
    assert client.get("/backups", headers=login(client)).get_json() == []
    assert not settings.backup_dir.exists() or list(settings.backup_dir.iterdir()) == []


def test_refused_uploads_leave_every_quota_slot_free(client, settings):
    for _ in range(settings.backup_quota + 1):
        assert _upload(client, b"\x28\xb5\x2f\xfd").status_code == 400
    for _ in range(settings.backup_quota):
        assert _upload(client, _plain_backup()).status_code == 202


@pytest.mark.parametrize("data", [
    _plain_backup(), AGE, _age_file(0), _age_file(64 << 10),
    encrypt_bytes(b"x", PASSWORD, work_factor=10),
], ids=["plain", "age-two-chunks", "age-empty", "age-one-full-chunk", "age-one-byte"])
def test_a_backup_file_is_accepted(client, data):
    response = _upload(client, data)
    assert (response.status_code, response.get_json()["state"]) == (202, "SUCCEEDED")


def test_an_age_file_to_public_keys_is_accepted(client):
    _, recipient = generate_x25519_identity()
    sink = io.BytesIO()
    with AgeWriter.for_recipients(sink, [recipient]) as writer:
        writer.write(b"payload")
    assert _upload(client, sink.getvalue()).status_code == 202
