"""What a worker and beat write at the INFO level: JSON lines only, no line a second for the
schedule tick, and no task's context on the lines that follow the task."""

from __future__ import annotations

import json

import pytest

from tests.integration.harness import RedisServer, Service, stop_in_background, wait_until

pytestmark = pytest.mark.integration


# About the HTTP surface, not where backups are kept: the folder only, so CI time does not double.
@pytest.fixture(scope="module")
def backend():
    return "folder"


@pytest.fixture(scope="module")
def service(tmp_path_factory, source_tree):
    root = tmp_path_factory.mktemp("logs")
    redis_server = RedisServer(root / "redis").start()
    running = Service(root / "service", redis_server, {"tree": source_tree}, extra_env={
        "H4_LOG_LEVEL": "INFO", "H4_SCRYPT_WORK_FACTOR": "10"}).start(workers=1, beat=True)
    # The reaper runs every 5 s: once the worker has run it, beat has sent ticks for a while.
    wait_until(lambda: "h4.maintenance.reap" in _log(running, "worker0"), 30, "a reaper run")
    yield running
    stop_in_background(running, redis_server)


def _log(service: Service, name: str) -> str:
    return (service.log_dir / f"{name}.log").read_text(errors="replace")


def _json_lines(service: Service, name: str) -> list[dict]:
    return [json.loads(line) for line in _log(service, name).splitlines()
            if line.startswith("{")]


def test_beat_writes_only_json_lines(service):
    lines = [line for line in _log(service, "beat").splitlines() if line.strip()]
    not_json = [line for line in lines if not line.startswith("{")]
    assert lines and not not_json, not_json
    assert all(json.loads(line)["level"] for line in lines)
    assert {json.loads(line)["component"] for line in lines} == {"beat"}


def test_the_schedule_tick_is_not_logged_at_info(service):
    assert "h4.schedule.tick" not in _log(service, "worker0") + _log(service, "beat")


def test_lines_after_a_task_carry_no_task_context(service):
    http = service.login()
    task = http.post(f"{service.url}/backups", json={}).json()
    assert service.wait_for_task(http, task["id"])["state"] == "SUCCEEDED"
    assert http.get(f"{service.url}/health").status_code == 200
    pings = [line for line in _json_lines(service, "worker0")
             if "h4.health.ping" in line["msg"] and "succeeded" in line["msg"]]
    assert pings and not [p for p in pings if "taskId" in p or "user" in p], pings
