"""Backups per second through 1, 2 and 4 worker processes.

    .venv/bin/python -m bench.service_scaling [--backups 200] [--workers 1,2,4]

Each worker count gets a fresh stack: a private redis-server, the API (2 gunicorn workers) and
that many `h4backup worker --concurrency 1` processes. All backups (tiny source, no password)
are POSTed by four client threads at once; the time runs from the first POST until the set of
running tasks in Redis is empty, and every task must have SUCCEEDED. On a machine with fewer
cores than workers the speedup cannot follow the worker count: the workers share the cores
with each other, the API, Redis and this client.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.servicelib import (  # noqa: E402
    ACCEPT,
    RUNNING_KEY,
    UNLIMITED,
    Stack,
    interrupt_on_signals,
    machine_note,
    need_tool,
    running_stack,
    wait_until,
)

POSTING_THREADS = 4


@dataclass(frozen=True)
class Round:
    workers: int
    backups: int
    posted_seconds: float
    total_seconds: float

    @property
    def rate(self) -> float:
        return self.backups / self.total_seconds


def post_all(stack: Stack, token: str, count: int) -> list[str]:
    """POST `count` backups from a few threads, each with its own connection."""
    def post(_: int) -> str:
        response = requests.post(f"{stack.url}/backups", json={},
                                 headers={"Accept": ACCEPT, "X-VCAV-Auth": token}, timeout=60)
        if response.status_code != 202:
            raise SystemExit(f"POST /backups answered {response.status_code}: {response.text}")
        return response.json()["id"]

    with ThreadPoolExecutor(POSTING_THREADS) as pool:
        return list(pool.map(post, range(count)))


def run_all(stack: Stack, token: str, count: int, timeout: float) -> tuple[list[str], float]:
    """Task ids, and how long the POSTs took; returns once no task is running."""
    client = stack.redis.client()
    started = time.monotonic()
    ids = post_all(stack, token, count)
    posted = time.monotonic() - started
    wait_until(lambda: client.scard(RUNNING_KEY) == 0, timeout, f"{count} backups",
               interval=0.01)
    return ids, posted


def check_succeeded(stack: Stack, ids: list[str]) -> None:
    client = stack.redis.client()
    with client.pipeline(transaction=False) as pipe:
        for task_id in ids:
            pipe.hget(f"h4:task:{task_id}", "state")
        states = pipe.execute()
    failed = len(ids) - states.count(b"SUCCEEDED")
    if failed:
        raise SystemExit(f"{failed} of {len(ids)} backups did not succeed; logs in {stack.root}")


def one_round(workers: int, args: argparse.Namespace) -> Round:
    env = {"H4_BACKUP_QUOTA": UNLIMITED, "H4_USER_TASK_CAP": UNLIMITED, "H4_LOG_LEVEL": "INFO"}
    with running_stack(env) as stack:
        stack.add_workers(workers)
        token = stack.login().headers["X-VCAV-Auth"]
        run_all(stack, token, workers * 2, args.timeout)  # each worker's first task imports
        started = time.monotonic()
        ids, posted = run_all(stack, token, args.backups, args.timeout)
        total = time.monotonic() - started
        check_succeeded(stack, ids)
    return Round(workers, args.backups, posted, total)


def print_table(rounds: list[Round]) -> None:
    base = rounds[0].rate
    print(f"\n{'workers':>7} {'backups':>7} {'POSTs s':>8} {'total s':>8} {'backups/s':>10} "
          f"{'speedup':>8}")
    for r in rounds:
        print(f"{r.workers:7d} {r.backups:7d} {r.posted_seconds:8.2f} {r.total_seconds:8.2f} "
              f"{r.rate:10.1f} {r.rate / base:7.2f}x")
    cores = os.cpu_count() or 1
    if any(r.workers > cores for r in rounds):
        print(f"\n{cores} cores: beyond {cores} workers the workers, the API, Redis and this "
              f"client share the same cores, so the speedup cannot follow the worker count")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backups", type=int, default=200, help="per worker count (200)")
    parser.add_argument("--workers", default="1,2,4", help="worker counts (default 1,2,4)")
    parser.add_argument("--timeout", type=float, default=600, help="per round, seconds (600)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    need_tool("redis-server", "redis-server")
    print(f"machine: {machine_note()}")
    print(f"{args.backups} backups of a tiny source (4 files of 1 KiB), no password, POSTed by "
          f"{POSTING_THREADS} threads; API: 2 gunicorn workers; H4_LOG_LEVEL=INFO")
    rounds = []
    for workers in (int(n) for n in args.workers.split(",")):
        rounds.append(one_round(workers, args))
        print(f"  {workers} workers: {rounds[-1].rate:.1f} backups/s", flush=True)
    print_table(rounds)
    return 0


if __name__ == "__main__":
    interrupt_on_signals()
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
