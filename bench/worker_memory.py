"""Peak memory of a worker backing up, then restoring, 1 GiB and 4 GiB of files.

    .venv/bin/python -m bench.worker_memory --sizes 1GiB,4GiB --limit-mib 320
    .venv/bin/python -m bench.worker_memory --count 20 --size 1GiB --limit-mib 320

Without --count, for each size a data set is made (bench/make_dataset.py), then backed up and
restored, each in a child process that first imports everything a worker process imports
(`worker.tasks`: Celery, Redis, the settings) and then runs `run_backup` or `run_restore` as a
task would, with a passphrase at the production scrypt work factor (18: 256 MiB for the key
derivation alone). The child's peak RSS is the figure; it must not grow with the size of the
sources. Exits non-zero when a peak is over the limit or a restore does not give back every
file and byte.

With --count N, one worker's life: a private redis-server on a free port, the API and one
`h4backup worker --concurrency 1` (prefork: its one pool process runs every task) are started
as deployed, and N passphrase backups of one data set are POSTed one after the other. Before
each, the pool process's high-water mark is reset (`5` into /proc/PID/clear_refs); after it,
its VmHWM is that backup's peak. The task's lease must name that process, and the process must
stay the same throughout: a recycled pool process would hide growth. Each backup is deleted
once measured. Exits non-zero when any peak is over the limit.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import benchlib  # noqa: E402


def child_backup(args: argparse.Namespace) -> dict:
    from common.backupfile.io.folder import FolderStorage
    from common.backupfile.write.pipeline import BackupJob, run_backup
    from common.backupfile.write.sources import Source

    job = BackupJob("bench", (Source("data", args.tree),), FolderStorage(args.out),
                    passphrase=benchlib.PASSPHRASE, work_factor=args.work_factor)
    seconds, outcome = benchlib.timed_result(lambda: run_backup(job, benchlib.QuietReporter()))
    return {"seconds": seconds, "files": outcome.files, "bytes": outcome.source_bytes,
            "stored": outcome.size, "hash": outcome.hash,
            "path": str(args.out / outcome.file_name)}


def child_restore(args: argparse.Namespace) -> dict:
    from common.backupfile.io.folder import stored_at
    from common.backupfile.read.restore import RestoreJob, run_restore

    job = RestoreJob("bench", *stored_at(args.backup_file), args.out,
                     passphrase=benchlib.PASSPHRASE,
                     max_work_factor=max(20, args.work_factor), expected_hash=args.hash)
    seconds, outcome = benchlib.timed_result(lambda: run_restore(job, benchlib.QuietReporter()))
    return {"seconds": seconds, "files": outcome.files, "bytes": outcome.bytes}


def run_child(*arguments: str) -> tuple[dict, float]:
    """One measured child; its report and its peak RSS in MiB."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, __file__, *arguments], check=True,
                          capture_output=True, text=True, env=env)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report, report["peak_kib"] / 1024


def measure_size(args: argparse.Namespace, size: int) -> list[tuple[str, ...]]:
    args.size = size
    rows = []
    with benchlib.work_folder(args, "memory") as work:
        # --data names a parent folder here: one data set per size below it.
        folder = args.data / f"{size}-{args.seed}" if args.data else None
        tree = benchlib.dataset(argparse.Namespace(**{**vars(args), "data": folder}), work)
        (work / "backups").mkdir()
        backup, peak = run_child("--child", "backup", "--tree", str(tree), "--out",
                                 str(work / "backups"), "--work-factor", str(args.work_factor))
        rows.append(_row("backup", size, backup, peak, args.limit_mib))
        restored, peak = run_child("--child", "restore", "--backup-file", backup["path"],
                                   "--hash", backup["hash"], "--out", str(work / "restores"),
                                   "--work-factor", str(args.work_factor))
        complete = (restored["files"], restored["bytes"]) == (backup["files"], backup["bytes"])
        rows.append(_row("restore" if complete else "restore INCOMPLETE", size, restored,
                         peak, args.limit_mib))
    return rows


def _row(what: str, size: int, result: dict, peak: float, limit: float) -> tuple[str, ...]:
    return (what, f"{size / (1 << 30):.0f} GiB", str(result["files"]),
            f"{result['bytes'] / benchlib.MB / result['seconds']:.0f}", f"{peak:.0f}",
            "ok" if peak <= limit else "OVER")


# --- one worker's life: successive backups through the service ------------------------------


SETTLE_SECONDS = 0.5


@dataclass(frozen=True)
class Measured:
    """One backup as the worker ran it: its time and its pool process's memory."""

    seconds: float
    peak_mib: float  # VmHWM since the mark was reset just before this backup
    after_mib: float  # VmRSS once the task had ended
    pid: int


def proc_status_mib(pid: int, field: str) -> float:
    """A memory line of /proc/PID/status (VmHWM, VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"/proc/{pid}/status has no {field}")


def reset_peak(pid: int) -> None:
    """VmHWM starts again from the current RSS (Linux 4.0 and later)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError as error:
        raise SystemExit(f"cannot reset the peak RSS of {pid}: {error}") from None


def pool_process(worker: subprocess.Popen) -> int:
    """The one prefork pool process of a `--concurrency 1` worker: the one that runs tasks."""
    from bench.servicelib import child_pids

    children = child_pids(worker.pid)
    if len(children) != 1:
        raise SystemExit(f"worker {worker.pid} has pool processes {children}, not one")
    return children[0]


def start_service(args: argparse.Namespace, work: Path, tree: Path):
    """A private redis-server, the API (plain HTTP) and one `h4backup worker`, as deployed."""
    from bench.servicelib import UNLIMITED, PrivateRedis, Stack

    redis = PrivateRedis(work / "redis").start()
    env = {"H4_TLS": "off", "H4_LOG_LEVEL": "INFO", "H4_BACKUP_QUOTA": UNLIMITED,
           "H4_USER_TASK_CAP": UNLIMITED, "H4_SCRYPT_WORK_FACTOR": str(args.work_factor)}
    stack = Stack(root=work / "service", redis=redis, sources={"data": tree}, extra_env=env,
                  api_workers=1)
    try:
        stack.start_api()
        stack.add_workers(1)
    except BaseException:
        stop_service(stack)
        raise
    return stack


def stop_service(stack) -> None:
    stack.stop()
    stack.redis.stop()


def one_backup(stack, http, pid: int, timeout: float) -> Measured:
    """POST one passphrase backup, wait for it, read the pool process's peak, delete it."""
    reset_peak(pid)
    backup_id, started = str(uuid.uuid4()), time.monotonic()
    task = http.post(f"{stack.url}/backups/{backup_id}",
                     json={"password": benchlib.PASSPHRASE}).json()
    holders = _wait_for(stack, http, task, started + timeout)
    seconds = time.monotonic() - started
    if holders - {pid}:
        raise SystemExit(f"the backup ran in {holders}, not in pool process {pid}")
    # The row is SUCCEEDED a moment before the task returns and its process gives memory back.
    time.sleep(SETTLE_SECONDS)
    measured = Measured(seconds, proc_status_mib(pid, "VmHWM"), proc_status_mib(pid, "VmRSS"),
                        pid)
    http.delete(f"{stack.url}/backups/{backup_id}")  # 20 at 1 GiB would hold ~14 GiB of disk
    return measured


def _wait_for(stack, http, task: dict, deadline: float) -> set[int]:
    """Polls the task until it ends well; the pids its lease named meanwhile."""
    from tests.integration.harness import lease_holder_pid

    client, holders = stack.redis.client(), set()
    while task["state"] == "RUNNING":
        if time.monotonic() > deadline:
            raise SystemExit(f"task {task['id']} still running; logs in {stack.log_dir}")
        holders.add(lease_holder_pid(client, task["id"]))
        time.sleep(0.2)
        task = http.get(f"{stack.url}/tasks/{task['id']}").json()
    if task["state"] != "SUCCEEDED":
        raise SystemExit(f"task {task['id']} ended {task['state']}: {task.get('error')}; "
                         f"logs in {stack.log_dir}")
    return holders - {None}


def measure_successive(args: argparse.Namespace) -> list[tuple[str, ...]]:
    rows = []
    with benchlib.work_folder(args, "memory") as work:
        folder = args.data / f"{args.size}-{args.seed}" if args.data else None
        tree = benchlib.dataset(argparse.Namespace(**{**vars(args), "data": folder}), work)
        stack = start_service(args, work, tree)
        try:
            http, pid = stack.login(), pool_process(stack.workers[0])
            print(f"worker {stack.workers[0].pid}, pool process {pid}: "
                  f"{proc_status_mib(pid, 'VmRSS'):.0f} MiB before the first backup", flush=True)
            for number in range(1, args.count + 1):
                measured = one_backup(stack, http, pid, args.timeout)
                rows.append(_successive_row(number, args, measured))
                print("  ".join(rows[-1]), flush=True)
                if pool_process(stack.workers[0]) != pid:
                    raise SystemExit("the pool process was replaced: its growth is hidden")
        finally:
            stop_service(stack)
    return rows


def _successive_row(number: int, args: argparse.Namespace, m: Measured) -> tuple[str, ...]:
    return (f"backup {number}/{args.count}", f"{args.size / (1 << 30):.0f} GiB",
            f"{args.size / benchlib.MB / m.seconds:.0f}", f"{m.peak_mib:.0f}",
            f"{m.after_mib:.0f}", "ok" if m.peak_mib <= args.limit_mib else "OVER")


def successive_main(args: argparse.Namespace) -> int:
    from bench.servicelib import interrupt_on_signals, need_tool

    need_tool("redis-server", "redis-server")
    interrupt_on_signals()
    started = time.monotonic()
    rows = measure_successive(args)
    print()
    benchlib.print_table(rows, ("run", "sources", "MB/s", "peak RSS MiB", "RSS after MiB",
                                f"<= {args.limit_mib:.0f} MiB"))
    print(f"(one worker process, prefork pool of 1; scrypt work factor {args.work_factor}; "
          f"{time.monotonic() - started:.0f} s)")
    return 0 if all(row[-1] == "ok" for row in rows) else 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    benchlib.common_arguments(parser, size=None)
    parser.add_argument("--sizes", default="1GiB,4GiB", help="data set sizes (default 1GiB,4GiB); "
                        "with --data, each is made in or reused from DATA/<bytes>-<seed>")
    parser.add_argument("--count", type=int, default=0,
                        help="run N backups of --size one after the other through one real "
                             "worker process, reporting its peak RSS after each")
    parser.add_argument("--size", type=benchlib.parse_size, default=benchlib.parse_size("1GiB"),
                        help="with --count: the data set size (default 1GiB)")
    parser.add_argument("--timeout", type=float, default=1800,
                        help="with --count: the longest one backup may take, seconds (1800)")
    parser.add_argument("--limit-mib", type=float, default=320)
    parser.add_argument("--work-factor", type=int, default=18)
    parser.add_argument("--child", choices=("backup", "restore"), help=argparse.SUPPRESS)
    for hidden in ("--tree", "--out", "--backup-file"):
        parser.add_argument(hidden, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--hash", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def child_main(args: argparse.Namespace) -> int:
    import worker.tasks  # noqa: F401 - a worker's whole import set, as in `h4backup worker`

    report = child_backup(args) if args.child == "backup" else child_restore(args)
    # ru_maxrss is in KiB on Linux: the largest this process ever was, all threads included.
    report["peak_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    print(benchlib.load_note())
    if args.count:
        return successive_main(args)
    started, rows = time.monotonic(), []
    for size in (benchlib.parse_size(text) for text in args.sizes.split(",")):
        rows += measure_size(args, size)
    benchlib.print_table(rows, ("run", "sources", "files", "MB/s", "peak RSS MiB",
                                f"<= {args.limit_mib:.0f} MiB"))
    print(f"(scrypt work factor {args.work_factor}; {time.monotonic() - started:.0f} s)")
    return 0 if all(row[-1] == "ok" and "INCOMPLETE" not in row[0] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
