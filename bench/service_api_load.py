"""Requests per second of the API under wrk, against a bare Flask endpoint served the same way.

    .venv/bin/python -m bench.service_api_load [--workers 2] [--seconds 10]

Both run under gunicorn with the API's gevent worker and the same worker count, side by side;
the loads take turns (bare, POST /backups, GET /tasks/{id}, GET /backups, then again) for --rounds
rounds, so a busy moment of the machine hits all of them, and each figure is the median of its
rounds. The service gets a private redis-server and no workers, so POST /backups measures the
accept path only: the tasks wait in the queue. Needs wrk (apt-get install -y wrk) and
redis-server. Exits 1 when a target is missed: POST /backups >= 30 % and GET /tasks/{id}
>= 50 % of the bare endpoint's requests per second.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.servicelib import (  # noqa: E402
    ACCEPT,
    UNLIMITED,
    WrkResult,
    child_pids,
    cpu_seconds,
    interrupt_on_signals,
    machine_note,
    need_tool,
    port_open,
    run_wrk,
    running_stack,
    stop_process,
    wait_until,
    wrk_script,
)
from tests.integration.harness import free_port  # noqa: E402

BODY = '{"password": "bench-Pa55"}'
BARE = "bare GET /ping"
TARGETS = {"POST /backups": 0.30, "GET /tasks/{id}": 0.50}
WARMUP_SECONDS = 2


@dataclass(frozen=True)
class Load:
    name: str
    url: str
    script: Path


@dataclass(frozen=True)
class Measured:
    wrk: WrkResult
    seconds: float
    worker_cpu: list[float]  # CPU seconds of each gunicorn worker during the run

    @property
    def cpu_ms_per_request(self) -> float:
        return sum(self.worker_cpu) * 1000 / max(self.wrk.requests, 1)

    @property
    def spread(self) -> str:
        """Each worker's busy share of one core: wrk's connections may all land on one."""
        return "+".join(f"{cpu / self.seconds:.0%}" for cpu in self.worker_cpu)


def measure(load: Load, args: argparse.Namespace, server: int) -> Measured:
    """A short unreported run first, so lazy imports and first connections are not counted."""
    run_wrk(load.url, load.script, WARMUP_SECONDS, args.threads, args.connections)
    workers = child_pids(server)
    before, started = [cpu_seconds(pid) for pid in workers], time.monotonic()
    result = run_wrk(load.url, load.script, args.seconds, args.threads, args.connections)
    seconds = time.monotonic() - started
    used = [cpu_seconds(pid) - cpu for pid, cpu in zip(workers, before, strict=True)]
    return Measured(result, seconds, used)


@contextlib.contextmanager
def bare_server(args: argparse.Namespace, scripts: Path) -> Iterator[tuple[Load, int]]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "bench.bare_app", "--port", str(port),
                               "--workers", str(args.workers)], cwd=ROOT,
                              start_new_session=True)
    try:
        wait_until(lambda: port_open(port) or server.poll() is not None, 30, "the bare app")
        if server.poll() is not None:
            raise SystemExit("the bare app did not start")
        script = wrk_script(scripts, "bare", "GET", {"Accept": ACCEPT})
        yield Load(BARE, f"http://127.0.0.1:{port}/ping", script), server.pid
    finally:
        stop_process(server)


def service_env() -> dict[str, str]:
    return {"H4_BACKUP_QUOTA": UNLIMITED, "H4_USER_TASK_CAP": UNLIMITED,
            "H4_LOG_LEVEL": "WARNING"}


def service_loads(url: str, token: str, task_id: str, scripts: Path) -> list[Load]:
    auth = {"Accept": ACCEPT, "X-VCAV-Auth": token}
    post = wrk_script(scripts, "post", "POST", {**auth, "Content-Type": "application/json"},
                      BODY)
    get = wrk_script(scripts, "get", "GET", auth)
    return [Load("POST /backups", f"{url}/backups", post),
            Load("GET /tasks/{id}", f"{url}/tasks/{task_id}", get),
            Load("GET /backups", f"{url}/backups", get)]


def measure_all(args: argparse.Namespace, scripts: Path) -> dict[str, list[Measured]]:
    """Every load once per round, in turn, with both servers up all along."""
    with bare_server(args, scripts) as (bare, bare_pid), \
            running_stack(service_env(), api_workers=args.workers) as stack:
        http = stack.login()
        first = http.post(f"{stack.url}/backups", json={"password": "bench-Pa55"})
        if first.status_code != 202:
            raise SystemExit(f"POST /backups answered {first.status_code}: {first.text}")
        loads = [(bare, bare_pid)] + [
            (load, stack.api.pid) for load in service_loads(
                stack.url, http.headers["X-VCAV-Auth"], first.json()["id"], scripts)]
        rounds: dict[str, list[Measured]] = {load.name: [] for load, _ in loads}
        for number in range(1, args.rounds + 1):
            for load, pid in loads:
                rounds[load.name].append(measure(load, args, pid))
            print(f"round {number}/{args.rounds}: " + ", ".join(
                f"{name} {runs[-1].wrk.requests_per_second:.0f}"
                for name, runs in rounds.items()) + " req/s", flush=True)
        return rounds


def median_run(runs: list[Measured]) -> Measured:
    """The run with the median requests per second (the upper one of an even count)."""
    ordered = sorted(runs, key=lambda run: run.wrk.requests_per_second)
    return ordered[len(ordered) // 2]


def verdict(name: str, row: Measured, ratio: float) -> tuple[bool, str]:
    target = TARGETS.get(name)
    if target is None:  # the yardstick and GET /backups: only their answers must be right
        ok = row.wrk.bad_status == 0
        return ok, "" if ok else "answers failed: FAIL"
    ok = ratio >= target and row.wrk.bad_status == 0
    return ok, f">= {target:.0%}: {'PASS' if ok else 'FAIL'}"


def print_table(rounds: dict[str, list[Measured]]) -> bool:
    medians = {name: median_run(runs) for name, runs in rounds.items()}
    bare = medians[BARE]
    bare_cpu = statistics.median(run.cpu_ms_per_request for run in rounds[BARE])
    print(f"\n{'endpoint':<17} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'vs bare':>7} "
          f"{'CPU ms/req':>10} {'CPU vs bare':>11} {'worker CPU':>11} {'non-2xx':>7}  target")
    passed = True
    for name, row in medians.items():
        ratio = row.wrk.requests_per_second / bare.wrk.requests_per_second
        cpu = statistics.median(run.cpu_ms_per_request for run in rounds[name])
        ok, text = verdict(name, row, ratio)
        passed &= ok
        print(f"{name:<17} {row.wrk.requests_per_second:8.1f} {row.wrk.p50_ms:7.2f} "
              f"{row.wrk.p99_ms:7.2f} {ratio:7.0%} {cpu:10.3f} {bare_cpu / cpu:11.0%} "
              f"{row.spread:>11} {row.wrk.bad_status:7d}  {text}")
        if row.wrk.socket_errors:
            print(f"{'':<17} socket errors: {row.wrk.socket_errors}")
    return passed


NOTES = """
Each row is the median of its rounds. CPU ms/req: CPU time of the gunicorn workers per request
(Redis and wrk not counted), median of the rounds; it does not depend on how the connections
were spread, so "CPU vs bare" is the steadier ratio of the two. worker CPU: each gunicorn
worker's busy share of one core during the median run. wrk opens its keep-alive connections
at once and whichever worker accepts first keeps them, so one worker may serve them all: then
that server uses one core, not two, and its req/s and ratio drop with it. GET /backups lists
an empty list: no worker runs, so no backup is ever stored."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--seconds", type=int, default=8, help="each wrk run (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="turns of every load (3)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    need_tool("wrk", "wrk")
    need_tool("redis-server", "redis-server")
    print(f"machine: {machine_note()}")
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.seconds}s --latency runs on the "
          "same machine: wrk and the server share its cores, so these figures are lower "
          "than the server alone could give")
    print(f"gunicorn with the API's gevent worker, {args.workers} workers, for both servers; "
          "the service "
          "runs with H4_LOG_LEVEL=WARNING (no line per request) and no workers (tasks queue)")
    with tempfile.TemporaryDirectory(prefix="h4bench-wrk-") as folder:
        rounds = measure_all(args, Path(folder))
    passed = print_table(rounds)
    print(NOTES)
    return 0 if passed else 1


if __name__ == "__main__":
    interrupt_on_signals()
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
