"""Redis or the workers stop answering: the API says so (503) and recovers by itself."""

from __future__ import annotations

import os
import signal

import pytest
import requests

from tests.integration.harness import wait_until
from tests.integration.trees import make_tree

pytestmark = pytest.mark.faults


def _status(service, path="/health", http=None):
    try:
        return (http or requests).get(f"{service.url}{path}", timeout=15).status_code
    except requests.RequestException:
        return None


def test_redis_outage_is_503_and_the_service_recovers_without_restart(make_service, tmp_path):
    service = make_service({"tree": make_tree(tmp_path / "tree", files=20)}, workers=1,
                           appendonly=True)
    http = service.login()
    service.redis.stop()
    down = http.post(f"{service.url}/backups", json={})
    assert (down.status_code, down.json()["code"]) == (503, "ServiceUnavailable")
    assert down.headers["Retry-After"]
    assert _status(service, "/sessions", http) == 503
    # Anyone's health answer may be the last check's, a few seconds old.
    wait_until(lambda: _status(service) == 503, 10, "health to say unavailable")
    service.redis.start()
    wait_until(lambda: _status(service) == 200, 60, "health to recover")
    task = service.wait_for_task(http, http.post(f"{service.url}/backups", json={}).json()["id"])
    assert task["state"] == "SUCCEEDED", task


def test_worker_alive_but_not_consuming_is_unhealthy(make_service, tmp_path):
    service = make_service({"tree": make_tree(tmp_path / "tree", files=5)}, workers=1,
                           beat=False)
    assert _status(service) == 200
    worker = service.workers[0]
    with open(f"/proc/{worker.pid}/task/{worker.pid}/children") as listing:
        children = [int(pid) for pid in listing.read().split()]
    for pid in [worker.pid, *children]:
        os.kill(pid, signal.SIGSTOP)
    try:
        response = service.login().get(f"{service.url}/health", timeout=15)
        assert response.status_code == 503
        assert response.json()["workers"]["ok"] is False
    finally:
        for pid in [worker.pid, *children]:
            os.kill(pid, signal.SIGCONT)
    wait_until(lambda: _status(service) == 200, 30, "health to recover")
