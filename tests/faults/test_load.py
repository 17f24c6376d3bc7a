"""500 backup requests from 20 clients against 3 workers: none lost, none twice, no secret leaks."""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time

import pytest
import requests

from tests.integration.harness import (
    REPO,
    free_port,
    redis_contents,
    stop_in_background,
    wait_until,
)

pytestmark = pytest.mark.faults

CLIENTS, REQUESTS_EACH = 20, 25
FLOWER_AUTH = ("flower", "flower-Pa55")


def _password(client: int, request: int) -> str:
    return f"load-{client:02d}-{request:02d}-S3cret!"


class Flower:
    def __init__(self, service, log_path) -> None:
        self.port = free_port()
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "--app", "worker.app", "flower",
                 f"--port={self.port}", "--address=127.0.0.1",
                 f"--basic-auth={':'.join(FLOWER_AUTH)}"],
                env=service.env(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(self._up, 60, "flower")
        except AssertionError:
            self.stop()
            raise AssertionError(f"flower did not start: {log_path.read_text()[-2000:]}") from None

    def _up(self) -> bool:
        assert self.process.poll() is None, "flower exited"
        try:
            return requests.get(self.url("/api/workers"), auth=FLOWER_AUTH, timeout=2).ok
        except requests.RequestException:
            return False

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def tasks_text(self) -> str:
        return requests.get(self.url("/api/tasks"), auth=FLOWER_AUTH, timeout=10).text

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(30)


class LoadRun:
    def __init__(self, service) -> None:
        self.service = service
        self.accepted: list[str] = []
        self.refused: list[int] = []
        self.latencies: list[float] = []
        self.lock = threading.Lock()

    def client(self, number: int) -> None:
        http = self.service.login()
        for request in range(REQUESTS_EACH):
            started = time.perf_counter()
            response = http.post(f"{self.service.url}/backups",
                                 json={"password": _password(number, request)})
            with self.lock:
                self.latencies.append(time.perf_counter() - started)
                if response.status_code == 202:
                    self.accepted.append(response.json()["id"])
                else:
                    self.refused.append(response.status_code)

    def run(self) -> None:
        threads = [threading.Thread(target=self.client, args=(n,)) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def _leaked(blobs, passwords) -> list[str]:
    joined = b"\n".join(blobs)
    return [p for p in passwords if p.encode() in joined]


def test_load_run_loses_nothing_duplicates_nothing_and_leaks_no_password(make_service, tmp_path):
    source = tmp_path / "tiny"
    source.mkdir()
    (source / "settings.conf").write_text("tenant = demo\n" * 200)
    service = make_service({"tiny": source}, workers=3, H4_BACKUP_QUOTA="100000",
                           H4_USER_TASK_CAP="100000")
    flower = Flower(service, tmp_path / "flower.log")
    try:
        _load_and_check(service, flower, tmp_path)
    finally:
        stop_in_background(flower)  # before the service and its Redis (see make_service)


def _load_and_check(service, flower, tmp_path) -> None:
    passwords = [_password(c, r) for c in range(CLIENTS) for r in range(REQUESTS_EACH)]
    load = LoadRun(service)
    client = service.redis.client()
    during: list[str] = []
    scanner = threading.Thread(target=lambda: during.extend(
        _leaked(redis_contents(client), passwords)))
    runner = threading.Thread(target=load.run)
    runner.start()
    time.sleep(0.5)
    scanner.start()
    runner.join()
    scanner.join()
    http = service.login()
    finished = [service.wait_for_task(http, task_id, seconds=400) for task_id in load.accepted]
    states = [t["state"] for t in finished]
    latencies = sorted(load.latencies)
    print(f"\nload: accepted={len(load.accepted)} refused={len(load.refused)} "
          f"succeeded={states.count('SUCCEEDED')} failed={states.count('FAILED')} "
          f"accept p50={statistics.median(latencies) * 1000:.1f} ms "
          f"p99={latencies[int(len(latencies) * 0.99) - 1] * 1000:.1f} ms")
    assert len(load.accepted) == CLIENTS * REQUESTS_EACH and not load.refused
    assert len(set(load.accepted)) == len(load.accepted)
    assert states == ["SUCCEEDED"] * len(load.accepted)
    backup_ids = [t["result"]["id"] for t in finished]
    assert len(set(backup_ids)) == len(backup_ids)
    assert sorted(n.split(".")[0] for n in service.stored_names()) == sorted(backup_ids)
    flower_seen = flower.tasks_text()
    assert load.accepted[-1] in flower_seen or load.accepted[0] in flower_seen
    assert during == []
    assert _leaked(redis_contents(client), passwords) == []
    assert _leaked([service.logs().encode(), (tmp_path / "flower.log").read_bytes()],
                   passwords) == []
    assert _leaked([flower_seen.encode()], passwords) == []
