"""What users feel while backups run: task polls and new backups, idle and with a 1 GiB backup
taking every core.

    .venv/bin/python -m bench.service_poll_latency [--data DIR] [--pollers 20] [--worker-nice N]

The API (gunicorn, 2 workers, its own redis-server) serves 20 clients that each poll
`GET /tasks/{id}` every 0.1 s (200 requests per second in all) and one client that sends
`POST /backups` 5 times a second, each on its own keep-alive connection, for two phases:

idle:    no worker runs; the backups asked for wait in the queue.
loaded:  one worker (`h4backup worker --concurrency 1`) backs up the 1 GiB mixed data set
         (bench/make_dataset.py) with a passphrase, the first backup that was asked for; the
         phase lasts from its first progress to its end. Its pipeline keeps both cores busy.

Every request is timed by its client, from sending to the whole answer; a poll that falls
behind its 0.1 s schedule waits for the next slot rather than bursting. The clients run in this
process, on the same machine, and their CPU is part of the load. The worker runs at the
H4_WORKER_NICE the service is given (--worker-nice sets it for the run). Exits 1 when, loaded,
the polls' p99 is over 50 ms or the backups' p99 over 100 ms, or any request failed.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import benchlib  # noqa: E402
from bench.servicelib import (  # noqa: E402
    ACCEPT,
    UNLIMITED,
    Stack,
    interrupt_on_signals,
    machine_note,
    need_tool,
    percentile,
    running_stack,
    wait_until,
)

PASSWORD = "bench-Pa55-poll"
TARGETS_MS = {"GET /tasks/{id}": 50.0, "POST /backups": 100.0}


@dataclass
class Timings:
    """Seconds per answered request, and what went wrong, per endpoint."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, seconds: float, ok: bool) -> None:
        with self.lock:
            self.seconds.setdefault(name, []).append(seconds)
            if not ok:
                self.failures[name] = self.failures.get(name, 0) + 1


class Clients:
    """The pollers and the backup client, each a thread on a fixed schedule."""

    def __init__(self, stack: Stack, token: str, task_id: str, args: argparse.Namespace):
        self.stack, self.token, self.task_id, self.args = stack, token, task_id, args
        self.timings = Timings()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> Clients:
        url = self.stack.url
        for index in range(self.args.pollers):
            offset = index * self.args.interval / self.args.pollers  # spread over the period
            self._spawn("GET /tasks/{id}", "GET", f"{url}/tasks/{self.task_id}",
                        self.args.interval, offset, 200)
        self._spawn("POST /backups", "POST", f"{url}/backups", 1 / self.args.post_rate, 0, 202)
        return self

    def stop(self) -> Timings:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        return self.timings

    def _spawn(self, name: str, method: str, url: str, period: float, offset: float,
               expected: int) -> None:
        thread = threading.Thread(target=self._run, daemon=True,
                                  args=(name, method, url, period, offset, expected))
        thread.start()
        self._threads.append(thread)

    def _run(self, name: str, method: str, url: str, period: float, offset: float,
             expected: int) -> None:
        session = requests.Session()
        session.headers.update({"Accept": ACCEPT, "X-VCAV-Auth": self.token})
        body = {"password": PASSWORD} if method == "POST" else None
        slot = time.monotonic() + offset
        while not self._stop.is_set():
            if self._stop.wait(max(0.0, slot - time.monotonic())):
                break
            started = time.monotonic()
            try:
                ok = session.request(method, url, json=body, timeout=10).status_code == expected
            except requests.RequestException:
                ok = False
            self.timings.add(name, time.monotonic() - started, ok)
            slot += period * max(1, int((time.monotonic() - slot) // period) + 1)


def first_task(stack: Stack, http: requests.Session) -> str:
    answer = http.post(f"{stack.url}/backups", json={"password": PASSWORD}, timeout=10)
    if answer.status_code != 202:
        raise SystemExit(f"POST /backups answered {answer.status_code}: {answer.text}")
    return answer.json()["id"]


def task(stack: Stack, http: requests.Session, task_id: str) -> dict:
    return http.get(f"{stack.url}/tasks/{task_id}", timeout=10).json()


def idle_phase(stack: Stack, token: str, task_id: str, args: argparse.Namespace) -> Timings:
    clients = Clients(stack, token, task_id, args).start()
    time.sleep(args.idle_seconds)
    return clients.stop()


def loaded_phase(stack: Stack, http: requests.Session, token: str, task_id: str,
                 args: argparse.Namespace) -> tuple[Timings, dict, float]:
    """From the first backup's first progress to its end, with the clients running."""
    # Started without waiting for its `ready.` line: the service logs at WARNING here.
    stack.workers.append(stack.spawn("worker0", "worker", "--concurrency", "1"))
    wait_until(lambda: task(stack, http, task_id)["progress"] > 0, 300, "the backup to start")
    started = time.monotonic()
    clients = Clients(stack, token, task_id, args).start()
    try:
        wait_until(lambda: task(stack, http, task_id)["state"] != "RUNNING", 1800,
                   "the backup to end")
    finally:
        timings = clients.stop()
    return timings, task(stack, http, task_id), time.monotonic() - started


def print_phase(name: str, timings: Timings, seconds: float) -> bool:
    passed = True
    for endpoint, answered in sorted(timings.seconds.items()):
        ms = [s * 1000 for s in answered]
        failed = timings.failures.get(endpoint, 0)
        p99 = percentile(ms, 0.99)
        verdict = ""
        if name == "loaded":
            ok = p99 <= TARGETS_MS[endpoint] and not failed
            passed &= ok
            verdict = f"p99 <= {TARGETS_MS[endpoint]:.0f} ms: {'PASS' if ok else 'FAIL'}"
        print(f"{name:<7} {endpoint:<16} {len(ms):6d} {len(ms) / seconds:6.0f} "
              f"{percentile(ms, 0.5):7.1f} {percentile(ms, 0.9):7.1f} {p99:7.1f} "
              f"{max(ms):7.1f} {failed:6d}  {verdict}")
    return passed


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    benchlib.common_arguments(parser)
    parser.add_argument("--pollers", type=int, default=20, help="polling clients (20)")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between polls")
    parser.add_argument("--post-rate", type=float, default=5.0, help="POST /backups per second")
    parser.add_argument("--idle-seconds", type=float, default=20.0, help="the idle phase")
    parser.add_argument("--api-workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--worker-nice", type=int,
                        help="H4_WORKER_NICE for the run (default: the service's own)")
    return parser.parse_args()


def service_env(args: argparse.Namespace) -> dict[str, str]:
    env = {"H4_BACKUP_QUOTA": UNLIMITED, "H4_USER_TASK_CAP": UNLIMITED,
           "H4_LOG_LEVEL": "WARNING"}
    if args.worker_nice is not None:
        env["H4_WORKER_NICE"] = str(args.worker_nice)
    return env


def run(args: argparse.Namespace, tree: Path) -> bool:
    with running_stack(service_env(args), api_workers=args.api_workers,
                       sources={"data": tree}) as stack:
        http = stack.login()
        token = http.headers["X-VCAV-Auth"]
        task_id = first_task(stack, http)
        idle = idle_phase(stack, token, task_id, args)
        loaded, ended, seconds = loaded_phase(stack, http, token, task_id, args)
    print(f"\n{'phase':<7} {'endpoint':<16} {'n':>6} {'req/s':>6} {'p50 ms':>7} {'p90 ms':>7} "
          f"{'p99 ms':>7} {'max ms':>7} {'failed':>6}")
    print_phase("idle", idle, args.idle_seconds)
    passed = print_phase("loaded", loaded, seconds)
    stored = (ended.get("result") or {}).get("size")
    print(f"\nthe backup under the load: {ended['state']} in {seconds:.1f} s from its first "
          f"progress" + (f", {stored / benchlib.MB:.0f} MB stored" if stored else ""))
    return passed and ended["state"] == "SUCCEEDED"


def main() -> int:
    args = parse_args()
    need_tool("redis-server", "redis-server")
    print(f"machine: {machine_note()}")
    print(f"{args.pollers} pollers every {args.interval} s, POST /backups {args.post_rate}/s; "
          f"API: {args.api_workers} gunicorn workers; worker nice: "
          f"{'service default' if args.worker_nice is None else args.worker_nice}")
    with benchlib.work_folder(args, "poll") as work:
        passed = run(args, benchlib.dataset(args, work))
    return 0 if passed else 1


if __name__ == "__main__":
    interrupt_on_signals()
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
