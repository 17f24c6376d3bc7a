"""No file on the host opens a past backup password (a rekey's new one too), given every key on
the disk.

An attacker who copies the data folder, Redis's folder (AOF and RDB) and the logs gets every
transit key the service ever wrote, and every sealed value Redis ever persisted. None of it may
open a single backup password: sealed passwords are kept in Redis memory only, and deleted
when their task ends.
"""

from __future__ import annotations

import base64
import re
import secrets
import stat
import subprocess
from pathlib import Path

import pytest
import redis

from common.config import load_settings
from common.transit import StaticKeys, TransitSealer
from tests.integration.harness import RedisServer, Service, stop_in_background, wait_until

pytestmark = pytest.mark.faults

BASE64_TOKEN = re.compile(rb"[A-Za-z0-9+/_-]{40,}={0,2}")
TASK_ID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _files(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file()]


def _decodings(token: bytes) -> list[bytes]:
    """The token read as standard and as URL-safe base64, whichever apply."""
    padded = token + b"=" * (-len(token) % 4)
    found = []
    for alphabet in (b"+/", b"-_"):
        try:
            found.append(base64.b64decode(padded, altchars=alphabet, validate=True))
        except ValueError:
            continue
    return found


def _keys_on_disk(files: list[Path]) -> tuple[bytes, ...]:
    """Every 32-byte value written as base64 anywhere: the transit keys among them."""
    return tuple({value for path in files for token in BASE64_TOKEN.findall(path.read_bytes())
                  for value in _decodings(token) if len(value) == 32})


def _opened_secrets(files: list[Path], keys: tuple[bytes, ...]) -> list[str]:
    sealer = TransitSealer(StaticKeys(keys))
    blobs = {token for path in files for token in BASE64_TOKEN.findall(path.read_bytes())}
    task_ids = {tid for path in files for tid in TASK_ID.findall(path.read_bytes())}
    opened = []
    for blob in blobs:
        for task_id in task_ids:
            try:
                opened.append(sealer.open(blob.decode(), task_id.decode()))
            except (ValueError, UnicodeDecodeError):
                continue
    return opened


def _start_backup(service, http, password: str) -> str:
    response = http.post(f"{service.url}/backups", json={"password": password})
    assert response.status_code == 202, response.text
    return response.json()["id"]


@pytest.fixture
def service_with_keys_on_disk(tmp_path):
    redis_server = RedisServer(tmp_path / "redis", appendonly=True).start()
    # No key in the environment: the service generates its keyring into the data folder.
    service = Service(tmp_path / "service", redis_server, {"etc": Path(__file__).parent},
                      extra_env={"H4_TRANSIT_KEY": "", "H4_SCRYPT_WORK_FACTOR": "10",
                                 "H4_USER_TASK_CAP": "20"})
    yield service.start(workers=1), redis_server
    stop_in_background(service, redis_server)


def test_no_file_on_disk_opens_a_past_backup_password(service_with_keys_on_disk):
    service, redis_server = service_with_keys_on_disk
    http = service.login()
    passwords = [f"pw-{secrets.token_hex(12)}" for _ in range(10)]
    task_ids = [_start_backup(service, http, pw) for pw in passwords]
    finished = [service.wait_for_task(http, tid, seconds=120) for tid in task_ids]
    assert [t["state"] for t in finished] == ["SUCCEEDED"] * 10
    # A rekey's old and new passwords travel the same way, and must end the same way.
    new_passwords = [f"new-pw-{secrets.token_hex(12)}" for _ in range(3)]
    for task, old, new in zip(finished, passwords, new_passwords, strict=False):
        response = http.post(f"{service.url}/backups/{task['result']['id']}/rekey",
                             json={"password": old, "newPassword": new})
        assert response.status_code == 202, response.text
        rekeyed = service.wait_for_task(http, response.json()["id"], seconds=120)
        assert rekeyed["state"] == "SUCCEEDED", rekeyed
    passwords += new_passwords
    client = redis_server.client()
    client.bgrewriteaof()
    wait_until(lambda: client.info("persistence")["aof_rewrite_in_progress"] == 0, 30,
               "the AOF rewrite")
    files = _files(redis_server.folder, service.root / "data", service.log_dir)
    keys = _keys_on_disk(files)
    assert keys, "the generated keyring should be found on disk"
    assert _opened_secrets(files, keys) == []
    everything = b"".join(path.read_bytes() for path in files)
    assert not [pw for pw in passwords if pw.encode() in everything]


def test_a_password_waiting_in_redis_is_only_in_memory(service_with_keys_on_disk):
    service, redis_server = service_with_keys_on_disk
    for worker in service.workers:  # no worker: the task waits with its sealed password
        worker.terminate()
        worker.wait(30)
    http = service.login()
    task_id = _start_backup(service, http, "waiting-Pa55")
    client = redis_server.client()
    assert client.get(f"h4:task:{task_id}:secret")  # held, for a worker to come
    wait_until(lambda: client.info("persistence")["aof_last_write_status"] == "ok", 5, "AOF")
    files = _files(redis_server.folder, service.root / "data")
    assert _opened_secrets(files, _keys_on_disk(files)) == []


def test_serve_gives_its_redis_a_password_and_private_files(tmp_path):
    from cli.server import serve

    settings = load_settings({"H4_DATA_DIR": str(tmp_path / "data")})
    process, url = serve.start_private_redis(settings)
    try:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()
        client = redis.Redis.from_url(url)
        client.set("h4:probe", "x")
        wait_until(lambda: any((tmp_path / "data" / "redis").rglob("*.aof")), 10, "the AOF")
        folder = tmp_path / "data" / "redis"
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.rglob("*") if p.is_file()}
        assert modes and set(modes.values()) == {0o600}, modes
        assert (folder / "url").read_text().strip() == url
        assert url.split("@")[0].split(":")[-1] not in " ".join(
            subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.split())
    finally:
        process.terminate()
        process.wait(15)
