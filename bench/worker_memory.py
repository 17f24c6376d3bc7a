"""Peak memory of a worker backing up, then restoring, 1 GiB and 4 GiB of files.

    .venv/bin/python -m bench.worker_memory --sizes 1GiB,4GiB --limit-mib 320

For each size a data set is made (bench/make_dataset.py), then backed up and restored, each in
a child process that first imports everything a worker process imports (`worker.tasks`:
Celery, Redis, the settings) and then runs `run_backup` or `run_restore` as a task would, with
a passphrase at the production scrypt work factor (18: 256 MiB for the key derivation alone).
The child's peak RSS is the figure; it must not grow with the size of the sources. Exits
non-zero when a peak is over the limit or a restore does not give back every file and byte.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    benchlib.common_arguments(parser, size=None)
    parser.add_argument("--sizes", default="1GiB,4GiB", help="data set sizes (default 1GiB,4GiB); "
                        "with --data, each is made in or reused from DATA/<bytes>-<seed>")
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
    started, rows = time.monotonic(), []
    for size in (benchlib.parse_size(text) for text in args.sizes.split(",")):
        rows += measure_size(args, size)
    benchlib.print_table(rows, ("run", "sources", "files", "MB/s", "peak RSS MiB",
                                f"<= {args.limit_mib:.0f} MiB"))
    print(f"(scrypt work factor {args.work_factor}; {time.monotonic() - started:.0f} s)")
    return 0 if all(row[-1] == "ok" and "INCOMPLETE" not in row[0] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
