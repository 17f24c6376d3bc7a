"""Soak: backups run without pause while workers are killed, Redis restarts and slow clients
hold connections. Nothing accepted is lost, nothing half-written is left, listed backups are
whole, and the figures are printed.

H4_SOAK_SECONDS sets how long the chaos lasts (default 60 s, which keeps the whole suite
under 15 minutes on a 2-core machine; run it longer by hand).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import random
import signal
import socket
import statistics
import threading
import time
from dataclasses import dataclass, field

import pytest
import requests

from tests.faults.conftest import write_random_tree
from tests.integration.harness import wait_until
from worker.maintenance import UNSENT_AGE_MS

pytestmark = pytest.mark.faults

SOAK_SECONDS = float(os.environ.get("H4_SOAK_SECONDS", "60"))
LEASE_SECONDS = 3
IN_FLIGHT = 3
SLOW_CONNECTIONS = 100
KEEP_BACKUPS = 6


@dataclass
class Figures:
    started: list[str] = field(default_factory=list)
    outcomes: dict[str, dict] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    probe_errors: collections.Counter = field(default_factory=collections.Counter)
    chaos: collections.Counter = field(default_factory=collections.Counter)
    peak_rss_kib: int = 0


class Soak:
    def __init__(self, service) -> None:
        self.service, self.figures = service, Figures()
        self.stop = threading.Event()
        self.rng = random.Random(20261129)

    # --- a client that keeps backups going --------------------------------------------------

    def _login(self) -> requests.Session | None:
        try:
            return self.service.login()
        except (AssertionError, requests.RequestException):
            return None

    def produce(self) -> None:
        http, outstanding, kept = None, set(), collections.deque()
        while not self.stop.is_set():
            http = http or self._login()
            if http is None:
                time.sleep(0.5)
                continue
            try:
                self._start_more(http, outstanding)
                self._collect(http, outstanding, kept)
            except requests.RequestException:
                http = None
            time.sleep(0.2)

    def _start_more(self, http, outstanding: set[str]) -> None:
        while len(outstanding) < IN_FLIGHT:
            body = {"password": f"soak-{len(self.figures.started)}"} if len(
                self.figures.started) % 2 else {}
            response = http.post(f"{self.service.url}/backups", json=body, timeout=10)
            if response.status_code != 202:
                return  # Redis is down (503) or the quota is full (409): try again later
            task_id = response.json()["id"]
            self.figures.started.append(task_id)
            outstanding.add(task_id)

    def _collect(self, http, outstanding: set[str], kept: collections.deque) -> None:
        for task_id in list(outstanding):
            task = http.get(f"{self.service.url}/tasks/{task_id}", timeout=10).json()
            if task.get("state") not in ("SUCCEEDED", "FAILED"):
                continue
            outstanding.discard(task_id)
            self.figures.outcomes[task_id] = task
            if task["state"] == "SUCCEEDED":
                kept.append(task["result"]["id"])
        while len(kept) > KEEP_BACKUPS:
            http.delete(f"{self.service.url}/backups/{kept.popleft()}", timeout=10)

    # --- an administrator polling, whose latency is measured --------------------------------

    def probe(self) -> None:
        http = None
        while not self.stop.is_set():
            http = http or self._login()
            started = time.monotonic()
            try:
                status = http.get(f"{self.service.url}/tasks", timeout=10).status_code \
                    if http else None
            except requests.RequestException:
                status = "error"
            if status == 200:
                self.figures.latencies.append(time.monotonic() - started)
            else:
                self.figures.probe_errors[str(status)] += 1
                http = None if status == 401 else http
            time.sleep(0.1)

    # --- slow clients -------------------------------------------------------------------------

    def drip(self) -> None:
        socks: list[socket.socket] = []
        while not self.stop.is_set():
            while len(socks) < SLOW_CONNECTIONS:
                try:
                    sock = self.service.connect("127.0.0.2", timeout=2)
                    sock.sendall(b"GET /tasks HTTP/1.1\r\nHost: h4\r\n")
                    socks.append(sock)
                except OSError:
                    break
            socks = [s for s in socks if self._send_line(s)]
            self.stop.wait(1.5)
        for sock in socks:
            sock.close()

    @staticmethod
    def _send_line(sock: socket.socket) -> bool:
        try:
            sock.sendall(b"X-Slow: 1\r\n")
            return True
        except OSError:
            sock.close()
            return False

    # --- an operator having a bad day ---------------------------------------------------------

    def wreak(self) -> None:
        actions = [self._kill_pool_child, self._kill_worker, self._restart_redis]
        while not self.stop.wait(self.rng.uniform(6, 12)):
            action = self.rng.choice(actions)
            self.figures.chaos[action.__name__.strip("_")] += 1
            action()

    def _live_workers(self):
        return [w for w in self.service.workers if w.poll() is None]

    def _kill_pool_child(self) -> None:
        for worker in self._live_workers()[:1]:
            for pid in _children(worker.pid):
                _signal(pid, signal.SIGKILL)

    def _kill_worker(self) -> None:
        live = self._live_workers()
        if live:
            victim = self.rng.choice(live)
            for pid in [victim.pid, *_children(victim.pid)]:
                _signal(pid, signal.SIGKILL)
            victim.wait(10)
        self.service.start_worker()

    def _restart_redis(self) -> None:
        self.service.redis.restart()

    # --- memory -------------------------------------------------------------------------------

    def sample_rss(self) -> None:
        while not self.stop.wait(0.25):
            for worker in self._live_workers():
                for pid in [worker.pid, *_children(worker.pid)]:
                    self.figures.peak_rss_kib = max(self.figures.peak_rss_kib, _rss_kib(pid))


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            return [int(child) for child in listing.read().split()]
    except OSError:
        return []


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _sha512_vcda(path) -> str:
    digest = hashlib.sha512()
    with open(path, "rb") as stored:
        for block in iter(lambda: stored.read(1 << 20), b""):
            digest.update(block)
    return "SHA-512:" + ":".join(f"{b:02X}" for b in digest.digest())


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else float("nan")


def _finish_outstanding(soak: Soak, seconds: float) -> list[str]:
    """Poll every accepted task that has not been seen to end; return those that never do."""
    http = soak.service.login()
    pending = [t for t in soak.figures.started if t not in soak.figures.outcomes]
    deadline = time.monotonic() + seconds
    while pending and time.monotonic() < deadline:
        for task_id in list(pending):
            task = http.get(f"{soak.service.url}/tasks/{task_id}", timeout=10).json()
            if task["state"] in ("SUCCEEDED", "FAILED"):
                soak.figures.outcomes[task_id] = task
                pending.remove(task_id)
        time.sleep(0.5)
    return pending


def _not_whole(service, listed: list[dict]) -> list[dict]:
    """Listed backups whose file is missing or does not have the listed SHA-512."""
    broken = []
    for backup in listed:
        paths = list(service.backup_dir.glob(f"{backup['id']}.tar.zst*"))
        if len(paths) != 1 or _sha512_vcda(paths[0]) != backup["hash"]:
            broken.append(backup)
    return broken


def _log_lines(service, ids: list[str]) -> str:
    return "\n".join(line[:300] for line in service.logs().splitlines()
                     if any(i in line for i in ids))


def _report(soak: Soak, lost: list[str], partial: list[str], listed: int,
            broken: list[dict]) -> str:
    figures = soak.figures
    by_code = collections.Counter(
        (t["error"] or {}).get("code", "?") for t in figures.outcomes.values()
        if t["state"] == "FAILED")
    succeeded = sum(1 for t in figures.outcomes.values() if t["state"] == "SUCCEEDED")
    return "\n".join([
        f"soak: {SOAK_SECONDS:.0f} s of chaos: {dict(figures.chaos)}",
        f"  tasks started {len(figures.started)}, succeeded {succeeded}, "
        f"failed {sum(by_code.values())} {dict(by_code)}, lost {len(lost)}",
        f"  partial files left {len(partial)}; listed backups {listed}, "
        f"{len(broken)} of them not whole",
        f"  authenticated GET /tasks: {len(figures.latencies)} answered, "
        f"p50 {statistics.median(figures.latencies) * 1000:.0f} ms, "
        f"p99 {_p99(figures.latencies) * 1000:.0f} ms; refused or failed: "
        f"{dict(figures.probe_errors)}",
        f"  worker peak RSS {figures.peak_rss_kib / 1024:.0f} MiB",
    ])


def test_soak_under_kills_redis_restarts_and_slow_clients(make_service, tmp_path, capsys):
    source = write_random_tree(tmp_path / "soak", 24 * 1024 * 1024, 4 * 1024 * 1024)
    service = make_service({"soak": source}, workers=2, appendonly=True,
                           H4_LEASE_SECONDS=str(LEASE_SECONDS), H4_BACKUP_QUOTA="40",
                           H4_ZSTD_LEVEL="9", H4_HEADER_TIMEOUT_SECONDS="5")
    soak = Soak(service)
    threads = [threading.Thread(target=job, daemon=True)
               for job in (soak.produce, soak.probe, soak.drip, soak.wreak, soak.sample_rss)]
    for thread in threads:
        thread.start()
    time.sleep(SOAK_SECONDS)
    soak.stop.set()
    for thread in threads:
        thread.join(60)
    # A message lost in transit (a Redis restart between a worker's pop and its delivery)
    # is sent again once its task has waited UNSENT_AGE_MS unclaimed: that long at most.
    lost = _finish_outstanding(soak, LEASE_SECONDS + 30 + UNSENT_AGE_MS / 1000)
    wait_until(lambda: not list(service.backup_dir.glob(".*.part")), 30, "partial files")
    partial = [p.name for p in service.backup_dir.glob(".*")]
    http = service.login()
    listed = http.get(f"{service.url}/backups").json()
    broken = _not_whole(service, listed)
    with capsys.disabled():
        print("\n" + _report(soak, lost, partial, len(listed), broken))
    assert broken == [], _log_lines(service, [b["id"] for b in broken] + lost)
    assert len(soak.figures.started) >= 20 and sum(soak.figures.chaos.values()) >= 5
    assert lost == [] and partial == []
    unclear = [t["error"] for t in soak.figures.outcomes.values()
               if t["state"] == "FAILED" and t["error"]["code"] == "GeneralServerFailure"]
    assert unclear == []
    assert soak.figures.peak_rss_kib < 400 * 1024
    # The service goes on serving after the chaos.
    last = http.post(f"{service.url}/backups", json={})
    assert service.wait_for_task(http, last.json()["id"], seconds=120)["state"] == "SUCCEEDED"
