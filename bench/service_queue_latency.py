"""Time from the 202 of POST /backups to a worker starting the task, idle and loaded.

    .venv/bin/python -m bench.service_queue_latency [--workers 2] [--samples 50]

A worker starts a task by claiming it: one Lua script sets the lease key h4:task:<id>:lease.
The private redis-server publishes keyspace events for that key, so this process learns the
moment of the claim without polling, and compares it with the moment the 202 arrived. Both
clocks are this process's monotonic clock. The claim can come before the client has read the
202 (the message is sent before the response): such a sample is negative, and counted as is.

idle:   one POST at a time (tiny source, no password), the next only after it ended.
loaded: one client per worker, each in a closed loop: POST a backup with a password, poll
        GET /tasks/{id} every 20 ms until it ends, POST again. Every worker is busy with scrypt
        (work factor 16: a fraction of a second each) nearly all the time and the cores are
        saturated, yet a task never waits behind another: at most one task per worker exists
        at once. Every POST is a sample.
Exits 1 when the idle p50 is over 20 ms.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.servicelib import (  # noqa: E402
    UNLIMITED,
    Stack,
    interrupt_on_signals,
    machine_note,
    need_tool,
    percentile,
    running_stack,
    summary_ms,
    wait_until,
)

IDLE_TARGET_MS = 20.0
LEASE_EVENTS = "__keyspace@0__:h4:task:*:lease"


class LeaseWatcher:
    """The first moment each task's lease key was set, from Redis keyspace events."""

    def __init__(self, client: redis.Redis) -> None:
        client.config_set("notify-keyspace-events", "K$")
        self.client = client  # a collected client closes the connection its pubsub reads
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe(LEASE_EVENTS)
        self.claimed: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="lease-watcher", daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                message = self.pubsub.get_message(timeout=0.2)
            except redis.ConnectionError:
                return  # Redis stopped: the benchmark is ending
            if message and message["data"] == b"set":
                task_id = message["channel"].decode().split(":")[-2]
                self.claimed.setdefault(task_id, time.monotonic())

    def wait_claim(self, task_id: str, seconds: float = 60) -> float:
        return wait_until(lambda: self.claimed.get(task_id), seconds, f"claim of {task_id}",
                          interval=0.001)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.pubsub.close()


def post_backup(http: requests.Session, url: str, body: dict) -> tuple[str, float]:
    """The new task's id and the moment its 202 arrived."""
    response = http.post(f"{url}/backups", json=body)
    arrived = time.monotonic()
    if response.status_code != 202:
        raise SystemExit(f"POST /backups answered {response.status_code}: {response.text}")
    return response.json()["id"], arrived


def ended_in_redis(client: redis.Redis, task_id: str) -> bool:
    state = client.hget(f"h4:task:{task_id}", "state")
    if state == b"FAILED":
        raise SystemExit(f"task {task_id} FAILED: {client.hget(f'h4:task:{task_id}', 'error')}")
    return state == b"SUCCEEDED"


def idle_samples(stack: Stack, watcher: LeaseWatcher, count: int) -> list[float]:
    client, http = stack.redis.client(), stack.login()
    samples = []
    for _ in range(count):
        task_id, arrived = post_backup(http, stack.url, {})
        samples.append(watcher.wait_claim(task_id) - arrived)
        wait_until(lambda t=task_id: ended_in_redis(client, t), 60, f"task {task_id}",
                   interval=0.005)
        time.sleep(0.05)  # the worker acknowledges the message and waits for the next one
    return samples


def loaded_client(stack: Stack, watcher: LeaseWatcher, until: float, samples: list[float],
                  errors: list[BaseException]) -> None:
    try:
        http = stack.login()
        while time.monotonic() < until:
            task_id, arrived = post_backup(http, stack.url, {"password": "bench-Pa55"})
            samples.append(watcher.wait_claim(task_id) - arrived)
            wait_until(lambda t=task_id: http.get(f"{stack.url}/tasks/{t}").json()["state"]
                       != "RUNNING", 120, f"task {task_id}", interval=0.02)
    except BaseException as exc:  # a thread's SystemExit would otherwise vanish silently
        errors.append(exc)


def loaded_samples(stack: Stack, watcher: LeaseWatcher, seconds: float) -> list[float]:
    samples: list[float] = []
    errors: list[BaseException] = []
    until = time.monotonic() + seconds
    clients = [threading.Thread(target=loaded_client, daemon=True,
                                args=(stack, watcher, until, samples, errors))
               for _ in stack.workers]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    if errors:
        raise SystemExit(f"a loaded client stopped: {errors[0]!r}")
    return samples


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--api-workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--samples", type=int, default=50, help="idle samples (default 50)")
    parser.add_argument("--loaded-seconds", type=float, default=30,
                        help="how long the loaded phase runs (default 30)")
    return parser.parse_args()


def describe(args: argparse.Namespace) -> None:
    print(f"machine: {machine_note()}")
    print(f"API: {args.api_workers} gunicorn workers; {args.workers} workers with --concurrency "
          "1; H4_LOG_LEVEL=INFO (the default); source: 4 files of 1 KiB")
    print(f"idle:   {args.samples} POSTs one at a time, no password, each after the last ended")
    print(f"loaded: {args.workers} clients for {args.loaded_seconds:.0f} s, each POSTs a backup "
          "with a password (scrypt work factor 16),\n        polls GET /tasks/{id} every 20 ms "
          "until it ends, POSTs again: workers busy, no task queued behind another")


def measure(args: argparse.Namespace) -> list[float]:
    """Idle samples after a short warm-up (a worker's first task imports lazily), then loaded."""
    env = {"H4_BACKUP_QUOTA": UNLIMITED, "H4_USER_TASK_CAP": UNLIMITED, "H4_LOG_LEVEL": "INFO",
           "H4_SCRYPT_WORK_FACTOR": "16"}
    with running_stack(env, api_workers=args.api_workers) as stack:
        stack.add_workers(args.workers)
        watcher = LeaseWatcher(stack.redis.client())
        try:
            idle_samples(stack, watcher, min(5, args.samples))
            idle = idle_samples(stack, watcher, args.samples)
            print(f"idle    202 -> claim: {summary_ms(idle)}", flush=True)
            loaded = loaded_samples(stack, watcher, args.loaded_seconds)
            print(f"loaded  202 -> claim: {summary_ms(loaded)}")
        finally:
            watcher.close()
    return idle


def main() -> int:
    args = parse_args()
    need_tool("redis-server", "redis-server")
    describe(args)
    p50 = percentile(measure(args), 0.5) * 1000
    passed = p50 <= IDLE_TARGET_MS
    print(f"idle p50 <= {IDLE_TARGET_MS:.0f} ms: {'PASS' if passed else 'FAIL'}")
    return 0 if passed else 1


if __name__ == "__main__":
    interrupt_on_signals()
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
