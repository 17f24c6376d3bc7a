"""The backup folder fills up: the backup fails cleanly and earlier backups stay whole."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile

import pyrage
import pytest
import zstandard

from tests.faults.conftest import write_random_tree

pytestmark = pytest.mark.faults

PASSWORD = "disk-full-Pa$$-3"


@pytest.fixture
def small_filesystem(tmp_path):
    """A 24 MiB tmpfs as the backup folder (root may mount; elsewhere the test cannot run)."""
    mount_point = tmp_path / "small-fs"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs",
                              str(mount_point)], capture_output=True, text=True)
    if mounted.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a small filesystem: {mounted.stderr}")
        pytest.skip(f"cannot mount a small filesystem: {mounted.stderr}")
    yield mount_point / "backups"
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _vcda_sha512(data: bytes) -> str:
    return "SHA-512:" + ":".join(f"{b:02X}" for b in hashlib.sha512(data).digest())


def test_full_disk_fails_insufficient_storage_and_keeps_earlier_backups(
        make_service, small_filesystem, tmp_path):
    source = write_random_tree(tmp_path / "grows", 4 * 1024 * 1024, 1024 * 1024)
    service = make_service({"grows": source}, workers=1, beat=False,
                           H4_BACKUP_DIR=str(small_filesystem))
    service_backup_dir = small_filesystem
    http = service.login()
    first = service.wait_for_task(
        http, http.post(f"{service.url}/backups", json={"password": PASSWORD}).json()["id"])
    assert first["state"] == "SUCCEEDED", first
    write_random_tree(source / "more", 40 * 1024 * 1024)
    second = service.wait_for_task(
        http, http.post(f"{service.url}/backups", json={"password": PASSWORD}).json()["id"])
    assert (second["state"], second["error"]["code"]) == ("FAILED", "InsufficientStorage")
    assert sorted(p.name for p in service_backup_dir.iterdir()) == [
        f"{first['result']['id']}.backup.json", f"{first['result']['id']}.tar.zst.age"]
    assert [b["id"] for b in http.get(f"{service.url}/backups").json()] == [
        first["result"]["id"]]
    stored = (service_backup_dir / f"{first['result']['id']}.tar.zst.age").read_bytes()
    assert _vcda_sha512(stored) == first["result"]["hash"]
    plain = zstandard.ZstdDecompressor().stream_reader(
        io.BytesIO(pyrage.passphrase.decrypt(stored, PASSWORD)))
    with tarfile.open(fileobj=plain, mode="r|") as archive:
        names = [member.name for member in archive]
    assert names[-1] == "h4backup-manifest.jsonl" and "grows/blob0000.bin" in names
