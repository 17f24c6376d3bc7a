"""Peak memory and throughput of one encrypted backup of a generated data set.

    python bench/worker_memory.py --size 2GiB --limit-mib 400

The data set (bench/make_dataset.py) is made in this process, or reused if it is already there;
the backup runs in a child process at the production work factor, so that the child's peak RSS
is exactly the pipeline's. Exits non-zero when that peak is over the limit.
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


class CountingReporter:
    def __init__(self) -> None:
        self.warnings = 0

    def progress(self, percent: int) -> None:
        pass

    def warning(self, error: object) -> None:
        self.warnings += 1

    def should_stop(self) -> bool:
        return False


def run_child(data_dir: Path, backup_dir: Path, work_factor: int, threads: int) -> None:
    """The measured part: one run_backup, reported as one JSON line on stdout."""
    from worker.pipeline import BackupJob, run_backup
    from worker.sources import Source

    job = BackupJob("bench", (Source("data", data_dir),), backup_dir, passphrase=PASSPHRASE,
                    work_factor=work_factor, zstd_threads=threads)
    reporter = CountingReporter()
    started = time.monotonic()
    outcome = run_backup(job, reporter)
    print(json.dumps({"seconds": time.monotonic() - started, "size": outcome.size,
                      "files": outcome.files, "source_bytes": outcome.source_bytes,
                      "warnings": reporter.warnings}))


def ensure_dataset(data_dir: Path, size: int, seed: int) -> None:
    marker = data_dir / ".dataset.json"
    wanted = {"size": size, "seed": seed, "text_ratio": 0.5}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        print(f"reusing data set {data_dir}")
        return
    shutil.rmtree(data_dir, ignore_errors=True)
    started = time.monotonic()
    files, total = make_dataset(data_dir / "tree", size, 0.5, seed)
    marker.write_text(json.dumps(wanted))
    print(f"made data set {data_dir}: {files} files, {total / (1 << 20):.0f} MiB "
          f"in {time.monotonic() - started:.1f} s")


def measure_backup(args: argparse.Namespace) -> tuple[dict, float]:
    """Runs the child; returns its report and its peak RSS in MiB."""
    with tempfile.TemporaryDirectory(prefix="h4backup-bench-out-") as backup_dir:
        command = [sys.executable, __file__, "--child", "--data", str(args.data / "tree"),
                   "--backup-dir", backup_dir, "--work-factor", str(args.work_factor),
                   "--zstd-threads", str(args.zstd_threads)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    # ru_maxrss is in KiB on Linux, and covers only children: this process is not counted.
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return json.loads(done.stdout.strip().splitlines()[-1]), peak_mib


def report(result: dict, peak_mib: float, limit_mib: float) -> bool:
    mb_per_s = result["source_bytes"] / 1e6 / result["seconds"]
    print(f"files: {result['files']}, source: {result['source_bytes'] / (1 << 20):.0f} MiB, "
          f"backup: {result['size'] / (1 << 20):.0f} MiB, warnings: {result['warnings']}")
    print(f"time: {result['seconds']:.1f} s, throughput: {mb_per_s:.0f} MB/s")
    within = peak_mib <= limit_mib
    print(f"peak RSS: {peak_mib:.0f} MiB (limit {limit_mib:.0f} MiB): "
          f"{'under' if within else 'OVER'} the limit")
    return within


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("2GiB"))
    parser.add_argument("--limit-mib", type=float, default=400)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data", type=Path, help="data set folder (default under the temp dir)")
    parser.add_argument("--work-factor", type=int, default=18)
    parser.add_argument("--zstd-threads", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backup-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.data is None:
        args.data = Path(tempfile.gettempdir()) / f"h4backup-bench-{args.size}-{args.seed}"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        run_child(args.data, args.backup_dir, args.work_factor, args.zstd_threads)
        return 0
    ensure_dataset(args.data, args.size, args.seed)
    result, peak_mib = measure_backup(args)
    return 0 if report(result, peak_mib, args.limit_mib) else 1


if __name__ == "__main__":
    sys.exit(main())
