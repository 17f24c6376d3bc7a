"""Hostile requests each get their 4xx ApiError; nothing outside the backup folder is touched."""

from __future__ import annotations

import json
import os

import pytest
import requests

from tests.integration.trees import make_tree

pytestmark = pytest.mark.faults

GUARD = "/etc/passwd"


@pytest.fixture(scope="module")
def hostile_service(tmp_path_factory):
    from tests.integration.harness import RedisServer, Service, stop_in_background

    root = tmp_path_factory.mktemp("hostile")
    redis_server = RedisServer(root / "redis").start()
    service = Service(root / "service", redis_server,
                      {"tree": make_tree(root / "tree", files=10)},
                      extra_env={"H4_SCRYPT_WORK_FACTOR": "10"}).start(workers=1)
    yield service
    stop_in_background(service, redis_server)


def _is_api_error(response: requests.Response, status: int) -> bool:
    body = response.json()
    return (response.status_code == status and set(body) == {"args", "code", "msg", "stacktrace"}
            and body["stacktrace"] == "" and response.headers["Content-Type"].startswith(
                "application/vnd.vmware.h4-v4.5+json"))


PATHS = ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "/etc/passwd",
         "not-a-uuid", "00000000-0000-0000-0000-00000000000g", "%00", "..", "%2e%2e",
         "a" * 5000]


@pytest.mark.parametrize("backup_id", PATHS)
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_hostile_backup_ids_are_404(hostile_service, backup_id, method):
    http = hostile_service.login()
    response = http.request(method, f"{hostile_service.url}/backups/{backup_id}", json={})
    assert response.status_code in (404, 405) and _is_api_error(response, response.status_code)


@pytest.mark.parametrize("path", ["/tasks/../../etc/passwd", "/tasks/%2e%2e%2fetc",
                                  "/backups/cookie/../../etc/passwd?cookie=x",
                                  "/backups/cookie/%2Fetc%2Fpasswd?cookie=x"])
def test_hostile_paths_elsewhere_are_404(hostile_service, path):
    http = hostile_service.login()
    response = http.get(hostile_service.url + path)
    assert _is_api_error(response, 404)


@pytest.mark.parametrize("body, status", [
    ("[" * 100_000 + "]" * 100_000, 413),
    ("[" * 20_000 + "]" * 20_000, 400),
    (json.dumps({"password": "x" * (1024 * 1024)}), 413),
    (json.dumps({"password": "x" * 1025}), 400),
    (json.dumps({"password": ["a"]}), 400),
    (json.dumps({"password": {"$ne": 1}}), 400),
    (json.dumps({"password": "ok", "sources": ["/etc"]}), 400),
    (json.dumps({"password": "ok", "backupDir": "/tmp"}), 400),
    ("\x00\x01\x02", 400),
    ('"just a string"', 400),
    ("null", 400),
])
def test_hostile_bodies_get_their_4xx(hostile_service, body, status):
    http = hostile_service.login()
    response = http.post(f"{hostile_service.url}/backups", data=body.encode(),
                         headers={"Content-Type": "application/json"})
    assert _is_api_error(response, status), response.text[:300]


@pytest.mark.parametrize("token", ["", "garbage", "x" * 10_000, "' OR 1=1 --", "\u2603"])
def test_missing_or_malformed_tokens_are_401(hostile_service, token):
    response = requests.post(f"{hostile_service.url}/backups", json={},
                             headers={"X-VCAV-Auth": token.encode("utf-8")})
    assert _is_api_error(response, 401)


def test_expired_token_is_401(hostile_service):
    http = hostile_service.login()
    digest = __import__("hashlib").sha256(http.headers["X-VCAV-Auth"].encode()).hexdigest()
    hostile_service.redis.client().delete(f"h4:session:{digest}")
    assert _is_api_error(http.get(f"{hostile_service.url}/sessions"), 401)


def test_nothing_outside_the_backup_folder_was_touched(hostile_service):
    before = os.stat(GUARD).st_mtime_ns
    http = hostile_service.login()
    for backup_id in PATHS:
        http.delete(f"{hostile_service.url}/backups/{backup_id}")
    assert os.stat(GUARD).st_mtime_ns == before
    assert "Traceback" not in hostile_service.logs()
