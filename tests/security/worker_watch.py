"""Real services fed crafted files: the worker's peak memory from /proc, a filesystem's
lowest free space while a restore runs."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.integration.harness import RedisServer, Service, parent_pid, stop_in_background

OCTET_STREAM = {"Content-Type": "application/octet-stream"}
# What a worker may reach while it reads a hostile file; an honest restore stays near 100 MiB
# without scrypt, and the findings this guards against reached 3 to 4 GiB.
RSS_LIMIT_KIB = 400 * 1024


@contextmanager
def running_service(root: Path, **env: str) -> Iterator[Service]:
    """One worker and a cheap scrypt."""
    (root / "source").mkdir(parents=True)
    redis_server = RedisServer(root / "redis").start()
    service = Service(root / "service", redis_server, {"tree": root / "source"},
                      extra_env={"H4_SCRYPT_WORK_FACTOR": "10", **env})
    try:
        yield service.start(workers=1)
    finally:
        stop_in_background(service, redis_server)


def worker_pids(service: Service) -> list[int]:
    """The Celery worker processes: each started one and the pool children it forked."""
    parents = {worker.pid for worker in service.workers}
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if parent_pid(int(entry)) in parents:
                    children.append(int(entry))
            except (OSError, ValueError):
                continue
    return sorted(parents) + children


def reset_peak_rss(pids: list[int]) -> None:
    """Sets each process's high-water mark back to its current RSS (Linux clear_refs, 5)."""
    for pid in pids:
        with open(f"/proc/{pid}/clear_refs", "w") as refs:
            refs.write("5")


def peak_rss_kib(pids: list[int]) -> int:
    """The largest VmHWM (peak resident memory) among pids, in KiB."""
    peaks = []
    for pid in pids:
        with open(f"/proc/{pid}/status") as status:
            peaks += [int(line.split()[1]) for line in status if line.startswith("VmHWM:")]
    return max(peaks)


def import_file(service: Service, http: requests.Session, data: bytes) -> requests.Response:
    return http.post(f"{service.url}/backups/import", data=data, headers=OCTET_STREAM)


def imported(service: Service, http: requests.Session, data: bytes) -> str:
    """Imports a crafted file (accepted: its framing is sound) and returns its backup id."""
    response = import_file(service, http, data)
    assert response.status_code == 202, response.text
    return response.json()["result"]["id"]


@dataclass
class Outcome:
    task: dict
    peak_rss_kib: int


def restore_measured(service: Service, http: requests.Session, backup_id: str) -> Outcome:
    """Restores a backup and waits for the end, with the worker's peak memory meanwhile."""
    pids = worker_pids(service)
    reset_peak_rss(pids)
    started = http.post(f"{service.url}/backups/{backup_id}/restore", json={})
    assert started.status_code == 202, started.text
    task = service.wait_for_task(http, started.json()["id"], seconds=120)
    return Outcome(task, peak_rss_kib(pids))


def failed_with(task: dict) -> str | None:
    return task["error"]["code"] if task["state"] == "FAILED" else None


@dataclass
class Lowest:
    free_bytes: int
    free_inodes: int


class FillWatch:
    """Polls a filesystem's free space and inodes from a thread; keeps the lowest seen."""

    def __init__(self, path: Path) -> None:
        self._path = path
        first = os.statvfs(path)
        self.lowest = Lowest(first.f_bavail * first.f_frsize, first.f_favail)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> FillWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _poll(self) -> None:
        while not self._stop.wait(0.001):
            now = os.statvfs(self._path)
            self.lowest = Lowest(min(self.lowest.free_bytes, now.f_bavail * now.f_frsize),
                                 min(self.lowest.free_inodes, now.f_favail))
