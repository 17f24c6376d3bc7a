"""Requests per second of the API under wrk, against a bare Flask endpoint served the same way.

    .venv/bin/python -m bench.service_api_load [--workers 2] [--seconds 10]

Both run under gunicorn gthread with 8 threads and the same worker count. The service gets a
private redis-server and no workers, so POST /backups measures the accept path only: the tasks
wait in the queue. Needs wrk (apt-get install -y wrk) and redis-server. Exits 1 when a target
is missed: POST /backups >= 40 % and GET /tasks/{id} >= 60 % of the bare endpoint.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
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
TARGETS = {"POST /backups": 0.40, "GET /tasks/{id}": 0.60}
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
    print(f"  {load.name:<18} {result.requests_per_second:9.1f} req/s", flush=True)
    return Measured(result, seconds, used)


def measure_bare(args: argparse.Namespace, scripts: Path) -> Measured:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "bench.bare_app", "--port", str(port),
                               "--workers", str(args.workers)], cwd=ROOT,
                              start_new_session=True)
    try:
        wait_until(lambda: port_open(port) or server.poll() is not None, 30, "the bare app")
        if server.poll() is not None:
            raise SystemExit("the bare app did not start")
        script = wrk_script(scripts, "bare", "GET", {"Accept": ACCEPT})
        load = Load("bare GET /ping", f"http://127.0.0.1:{port}/ping", script)
        return measure(load, args, server.pid)
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


def measure_service(args: argparse.Namespace, scripts: Path) -> dict[str, Measured]:
    with running_stack(service_env(), api_workers=args.workers) as stack:
        http = stack.login()
        first = http.post(f"{stack.url}/backups", json={"password": "bench-Pa55"})
        if first.status_code != 202:
            raise SystemExit(f"POST /backups answered {first.status_code}: {first.text}")
        token = http.headers["X-VCAV-Auth"]
        loads = service_loads(stack.url, token, first.json()["id"], scripts)
        return {load.name: measure(load, args, stack.api.pid) for load in loads}


def verdict(name: str, row: Measured, ratio: float) -> tuple[bool, str]:
    target = TARGETS.get(name)
    if target is None:
        return True, ""
    ok = ratio >= target and row.wrk.bad_status == 0
    return ok, f">= {target:.0%}: {'PASS' if ok else 'FAIL'}"


def print_table(bare: Measured, results: dict[str, Measured]) -> bool:
    print(f"\n{'endpoint':<17} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'vs bare':>7} "
          f"{'CPU ms/req':>10} {'worker CPU':>11} {'non-2xx':>7}  target")
    passed = True
    for name, row in {"bare GET /ping": bare, **results}.items():
        ratio = row.wrk.requests_per_second / bare.wrk.requests_per_second
        ok, text = verdict(name, row, ratio)
        passed &= ok
        print(f"{name:<17} {row.wrk.requests_per_second:8.1f} {row.wrk.p50_ms:7.2f} "
              f"{row.wrk.p99_ms:7.2f} {ratio:7.0%} {row.cpu_ms_per_request:10.3f} "
              f"{row.spread:>11} {row.wrk.bad_status:7d}  {text}")
        if row.wrk.socket_errors:
            print(f"{'':<17} socket errors: {row.wrk.socket_errors}")
    return passed


NOTES = """
CPU ms/req: CPU time of the gunicorn workers per request (Redis and wrk not counted); it does
not depend on how the connections were spread. worker CPU: each gunicorn worker's busy share
of one core during the run. wrk opens its keep-alive connections at once and whichever worker
accepts first keeps them, so one worker may serve them all: then that server uses one core,
not two, and its req/s and ratio drop with it. GET /backups lists an empty list: no worker
runs, so no backup is ever stored."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--seconds", type=int, default=10, help="each wrk run (default 10)")
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
    print(f"gunicorn gthread, 8 threads, {args.workers} workers, for both servers; the service "
          "runs with H4_LOG_LEVEL=WARNING (no line per request) and no workers (tasks queue)")
    with tempfile.TemporaryDirectory(prefix="h4bench-wrk-") as folder:
        bare = measure_bare(args, Path(folder))
        results = measure_service(args, Path(folder))
    passed = print_table(bare, results)
    print(NOTES)
    return 0 if passed else 1


if __name__ == "__main__":
    interrupt_on_signals()
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
