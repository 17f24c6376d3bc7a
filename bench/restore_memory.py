"""Peak memory and throughput of one restore of an encrypted backup of a generated data set.

    python bench/restore_memory.py --size 2GiB --limit-mib 400

The data set (bench/make_dataset.py) is made in this process, or reused if it is already there,
and backed up here too; only the restore runs in a child process, at the production work
factor, so that the child's peak RSS is the restore's alone. Exits non-zero when that peak is
over the limit or when the restore does not give back every file and byte.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from make_dataset import make_dataset, parse_size  # noqa: E402

PASSPHRASE = "benchmark passphrase"


class QuietReporter:
    def progress(self, percent: int) -> None:
        pass

    def warning(self, error: object) -> None:
        print(f"warning: {error}", file=sys.stderr)

    def should_stop(self) -> bool:
        return False


def run_child(args: argparse.Namespace) -> None:
    """The measured part: one run_restore, reported as one JSON line on stdout."""
    from worker.restore import RestoreJob, run_restore

    job = RestoreJob("bench", args.backup_file, args.restore_root, passphrase=PASSPHRASE,
                     max_work_factor=max(20, args.work_factor), expected_hash=args.hash)
    started = time.monotonic()
    outcome = run_restore(job, QuietReporter())
    print(json.dumps({"seconds": time.monotonic() - started, "files": outcome.files,
                      "bytes": outcome.bytes}))


def ensure_dataset(data_dir: Path, size: int, seed: int) -> Path:
    marker, tree = data_dir / ".dataset.json", data_dir / "tree"
    wanted = {"size": size, "seed": seed, "text_ratio": 0.5}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        print(f"reusing data set {data_dir}")
        return tree
    shutil.rmtree(data_dir, ignore_errors=True)
    started = time.monotonic()
    files, total = make_dataset(tree, size, 0.5, seed)
    marker.write_text(json.dumps(wanted))
    print(f"made data set {data_dir}: {files} files, {total / (1 << 20):.0f} MiB "
          f"in {time.monotonic() - started:.1f} s")
    return tree


def make_backup(tree: Path, backup_dir: Path, work_factor: int):
    from worker.pipeline import BackupJob, run_backup
    from worker.sources import Source

    backup_dir.mkdir()
    started = time.monotonic()
    job = BackupJob("bench", (Source("data", tree),), backup_dir, passphrase=PASSPHRASE,
                    work_factor=work_factor)
    outcome = run_backup(job, QuietReporter())
    print(f"backup: {outcome.files} files, {outcome.size / (1 << 20):.0f} MiB stored "
          f"in {time.monotonic() - started:.1f} s")
    return outcome


def measure_restore(args: argparse.Namespace, backup, restore_root: Path) -> tuple[dict, float]:
    """Runs the child; returns its report and its peak RSS in MiB."""
    command = [sys.executable, __file__, "--child", "--backup-file", str(backup.path),
               "--restore-root", str(restore_root), "--hash", backup.hash,
               "--work-factor", str(args.work_factor)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    # ru_maxrss is in KiB on Linux and covers only children: the backup made here is not in it.
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return json.loads(done.stdout.strip().splitlines()[-1]), peak_mib


def report(result: dict, backup, peak_mib: float, limit_mib: float) -> bool:
    complete = (result["files"], result["bytes"]) == (backup.files, backup.source_bytes)
    print(f"restored: {result['files']} files, {result['bytes'] / (1 << 20):.0f} MiB "
          f"({'complete' if complete else 'INCOMPLETE'})")
    print(f"time: {result['seconds']:.1f} s, "
          f"throughput: {result['bytes'] / 1e6 / result['seconds']:.0f} MB/s")
    within = peak_mib <= limit_mib
    print(f"peak RSS: {peak_mib:.0f} MiB (limit {limit_mib:.0f} MiB): "
          f"{'under' if within else 'OVER'} the limit")
    return within and complete


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("2GiB"))
    parser.add_argument("--limit-mib", type=float, default=400)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data", type=Path, help="data set folder (default under the temp dir)")
    parser.add_argument("--work-factor", type=int, default=18)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--backup-file", "--restore-root"):
        parser.add_argument(hidden, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--hash", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.data is None:
        args.data = Path(tempfile.gettempdir()) / f"h4backup-bench-{args.size}-{args.seed}"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        run_child(args)
        return 0
    tree = ensure_dataset(args.data, args.size, args.seed)
    with tempfile.TemporaryDirectory(prefix="h4backup-bench-restore-") as work:
        backup = make_backup(tree, Path(work) / "backups", args.work_factor)
        result, peak_mib = measure_restore(args, backup, Path(work) / "restores")
    return 0 if report(result, backup, peak_mib, args.limit_mib) else 1


if __name__ == "__main__":
    sys.exit(main())
