"""Backup throughput to the object store on loopback against the local folder, and peak RSS.

    .venv/bin/python -m bench.storage_speed --size 1GiB --rounds 3
    .venv/bin/python -m bench.storage_speed --part-size-mib 16 --parts-in-flight 4   # variations

One SeaweedFS (`weed mini`, as the integration tests start it: tests/integration/objectstore.py)
listens on 127.0.0.1. Each round makes two backups of the same data set, alternating: into a
FolderStorage on the work folder's disk, then into an S3Storage bucket of that store. Each
backup runs in a fresh child process that first imports what a worker imports (`worker.tasks`),
builds the storage as the service does (common/bootstrap.py; boto3 only for S3) and runs
`run_backup` with a passphrase at scrypt work factor 18 and the service's default zstd level and
threads; its ru_maxrss is the peak RSS of that one backup. Each stored backup is deleted after
its round. Printed: MB/s of source bytes per contender (median, slowest-fastest), the ratio
S3/folder, the worker's peak RSS (median, max; and its RSS before the backup, i.e. imports and
storage), the CPU seconds of the worker during the backup and of weed during each round, and
weed's RSS at the end. weed runs on the same cores as the worker, so on a small machine its
CPU is taken from the pipeline: a remote store would not cost the worker's host that.

--part-size-mib, --parts-in-flight, --checksum and --unsigned-payload change only the S3
contender (S3Options fields, or the client's botocore Config), to find what limits it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import benchlib  # noqa: E402

MIB = 1 << 20
_ACCESS_ENV, _SECRET_ENV = "H4BENCH_S3_ACCESS_KEY", "H4BENCH_S3_SECRET_KEY"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
GOAL_RATIO = 0.9


# --- the child: one backup, as a worker runs it ----------------------------------------------

def child_storage(args: argparse.Namespace):
    """The storage of the child's backup, built as common/bootstrap.py builds it."""
    if args.child == "folder":
        from common.backupfile.io.folder import FolderStorage

        return FolderStorage(args.out)
    from common.backupfile.io.s3 import S3Options, S3Storage

    options = S3Options(bucket=args.bucket, endpoint=args.endpoint, prefix=args.prefix,
                        region=args.region, access_key=os.environ[_ACCESS_ENV],
                        secret_key=os.environ[_SECRET_ENV],
                        **({"part_size": args.part_size_mib * MIB} if args.part_size_mib
                           else {}),
                        **({"parts_in_flight": args.parts_in_flight} if args.parts_in_flight
                           else {}))
    client = None
    if args.checksum or args.unsigned_payload:
        client = _client_with(options, args.checksum, args.unsigned_payload)
    return S3Storage(options, client=client)


def _client_with(options, checksum: str | None, unsigned_payload: bool):
    """make_client's client (the same Config) with botocore's checksum or payload signing
    changed, to measure what they cost."""
    import boto3
    from botocore.config import Config

    s3 = {"addressing_style": "path",
          **({"payload_signing_enabled": False} if unsigned_payload else {})}
    config = Config(
        region_name=options.region, connect_timeout=options.connect_timeout,
        read_timeout=options.read_timeout,
        retries={"max_attempts": options.attempts, "mode": "standard"},
        s3=s3, max_pool_connections=options.parts_in_flight + 4,
        **({"request_checksum_calculation": checksum} if checksum else {}))
    return boto3.session.Session().client(
        "s3", endpoint_url=options.endpoint, aws_access_key_id=options.access_key,
        aws_secret_access_key=options.secret_key, config=config)


def child_main(args: argparse.Namespace) -> int:
    import worker.tasks  # noqa: F401 - a worker's whole import set, as in `h4backup worker`
    from common.backupfile.write.pipeline import BackupJob, run_backup
    from common.backupfile.write.sources import Source

    storage = child_storage(args)
    job = BackupJob(uuid.uuid4().hex, (Source("data", args.tree),), storage,
                    passphrase=benchlib.PASSPHRASE, zstd_level=args.level,
                    zstd_threads=args.threads, work_factor=args.work_factor)
    rss_before = _rss_kib("self")
    cpu_before = _own_cpu()
    seconds, outcome = benchlib.timed_result(lambda: run_backup(job, benchlib.QuietReporter()))
    print(json.dumps({
        "seconds": seconds, "cpu": _own_cpu() - cpu_before, "files": outcome.files,
        "bytes": outcome.source_bytes, "stored": outcome.size, "name": outcome.file_name,
        "rss_before_kib": rss_before,
        # ru_maxrss is in KiB on Linux: the largest this process ever was, all threads included.
        "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
    return 0


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_kib(pid: int | str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("VmRSS:")))


# --- the parent --------------------------------------------------------------------------------

@dataclass
class Runs:
    """What each backup of one contender reported, in order."""
    seconds: list[float] = field(default_factory=list)
    worker_cpu: list[float] = field(default_factory=list)
    weed_cpu: list[float] = field(default_factory=list)
    peak_mib: list[float] = field(default_factory=list)
    before_mib: list[float] = field(default_factory=list)
    added_mib: list[float] = field(default_factory=list)
    stored: list[int] = field(default_factory=list)


def weed_cpu_seconds(pid: int) -> float:
    """utime + stime of the whole weed process (all its threads), from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()  # fields 3.. of proc(5); comm may hold spaces
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def weed_peak_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("VmHWM:")))


class Bench:
    def __init__(self, args: argparse.Namespace, tree: Path, out: Path, store, bucket: str):
        from common.backupfile.io.folder import FolderStorage
        from common.backupfile.io.s3 import S3Options, S3Storage

        self.args, self.tree, self.out, self.store, self.bucket = args, tree, out, store, bucket
        self.prefix = "bench/"
        self.folder = FolderStorage(out)
        # The parent's own view of the bucket, to check and delete what each child stored.
        self.s3 = S3Storage(S3Options(bucket=bucket, endpoint=store.endpoint, prefix=self.prefix,
                                      region=store.region, access_key=store.access_key,
                                      secret_key=store.secret_key))
        self.runs = {"folder": Runs(), "s3": Runs()}

    def child(self, kind: str) -> dict:
        args = self.args
        common = ["--child", kind, "--tree", str(self.tree), "--level", str(args.level),
                  "--threads", str(args.threads), "--work-factor", str(args.work_factor)]
        if kind == "folder":
            extra = ["--out", str(self.out)]
        else:
            extra = ["--bucket", self.bucket, "--endpoint", self.store.endpoint,
                     "--prefix", self.prefix, "--region", self.store.region,
                     *(["--part-size-mib", str(args.part_size_mib)] if args.part_size_mib
                       else []),
                     *(["--parts-in-flight", str(args.parts_in_flight)]
                       if args.parts_in_flight else []),
                     *(["--checksum", args.checksum] if args.checksum else []),
                     *(["--unsigned-payload"] if args.unsigned_payload else [])]
        env = {**os.environ, "PYTHONPATH": str(ROOT), _ACCESS_ENV: self.store.access_key,
               _SECRET_ENV: self.store.secret_key}
        done = subprocess.run([sys.executable, __file__, *common, *extra], check=False,
                              capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise SystemExit(f"the {kind} backup failed ({done.returncode}):\n{done.stderr}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def backup(self, kind: str) -> float:
        """One backup in a child; returns run_backup's seconds, and deletes what it stored."""
        pid = self.store.pid
        weed_before = weed_cpu_seconds(pid)
        report = self.child(kind)
        weed_used = weed_cpu_seconds(pid) - weed_before
        storage = self.folder if kind == "folder" else self.s3
        found = storage.stat(report["name"])
        if found is None or found.size != report["stored"]:
            raise SystemExit(f"the {kind} backup {report['name']} is not stored whole: {found}")
        storage.delete(report["name"])
        runs = self.runs[kind]
        runs.seconds.append(report["seconds"])
        runs.worker_cpu.append(report["cpu"])
        runs.weed_cpu.append(weed_used)
        runs.peak_mib.append(report["peak_kib"] / 1024)
        runs.before_mib.append(report["rss_before_kib"] / 1024)
        runs.added_mib.append((report["peak_kib"] - report["rss_before_kib"]) / 1024)
        runs.stored.append(report["stored"])
        return report["seconds"]

    def contenders(self) -> dict:
        return {"folder": lambda: self.backup("folder"), "s3": lambda: self.backup("s3")}


def s3_label(args: argparse.Namespace) -> str:
    from common.backupfile.io.s3 import S3Options

    defaults = S3Options(bucket="x")
    part = args.part_size_mib or defaults.part_size // MIB
    flight = args.parts_in_flight or defaults.parts_in_flight
    extra = ((f", checksum {args.checksum}" if args.checksum else "")
             + (", unsigned payload" if args.unsigned_payload else ""))
    return f"s3 on loopback ({part} MiB parts, {flight} in flight{extra})"


def report(bench: Bench, size: int, label: str) -> None:
    folder, s3 = bench.runs["folder"], bench.runs["s3"]
    rounds = bench.args.rounds
    names = {"folder": "folder (same disk as the work folder)", "s3": label}
    base = statistics.median(folder.seconds[-rounds:])
    rows = []
    for name, runs in bench.runs.items():
        seconds = runs.seconds[-rounds:]
        median = statistics.median(seconds)
        rows.append((names[name], f"{median:.2f}", f"{size / benchlib.MB / median:.0f}",
                     f"{size / benchlib.MB / max(seconds):.0f}-"
                     f"{size / benchlib.MB / min(seconds):.0f}",
                     f"{statistics.median(runs.worker_cpu[-rounds:]):.1f}",
                     f"{statistics.median(runs.weed_cpu[-rounds:]):.1f}",
                     f"{base / median:.2f}x"))
    benchlib.print_table(rows, ("backup into", "median s", "MB/s", "MB/s range",
                                "worker CPU s", "weed CPU s", "vs folder"))
    ratio = base / statistics.median(s3.seconds[-rounds:])
    print(f"throughput ratio s3/folder: {ratio:.2f}x (goal >= {GOAL_RATIO}x): "
          f"{'met' if ratio >= GOAL_RATIO else 'NOT met'}")
    stored = statistics.median(s3.stored[-rounds:])
    sent = stored / benchlib.MB / statistics.median(s3.seconds[-rounds:])
    print(f"stored {stored / MIB:.0f} MiB per backup ({stored / size:.2f} of the sources): "
          f"the s3 backups sent {sent:.0f} MB/s to the store")
    print()
    rows = [(names[name], f"{statistics.median(runs.peak_mib[-rounds:]):.0f}",
             f"{max(runs.peak_mib[-rounds:]):.0f}",
             f"{statistics.median(runs.before_mib[-rounds:]):.0f}",
             f"{statistics.median(runs.added_mib[-rounds:]):.0f}")
            for name, runs in bench.runs.items()]
    benchlib.print_table(rows, ("worker", "peak RSS MiB median", "max",
                                "before the backup (imports, storage)", "added by the backup"))
    peak_ok = max(s3.peak_mib[-rounds:]) <= max(folder.peak_mib[-rounds:])
    print(f"worker peak RSS s3 <= folder: {'met' if peak_ok else 'NOT met'} "
          f"(scrypt work factor {bench.args.work_factor}: "
          f"{128 * 8 * (1 << bench.args.work_factor) / MIB:.0f} MiB of it)")
    pid = bench.store.pid
    print(f"weed RSS after the run: {bench.store.rss_bytes() / MIB:.0f} MiB "
          f"(peak {weed_peak_kib(pid) / 1024:.0f} MiB); weed CPU per s3 backup "
          f"{statistics.median(s3.weed_cpu[-rounds:]):.1f} s median "
          f"(per folder backup, idle: {statistics.median(folder.weed_cpu[-rounds:]):.1f} s)")
    print(f"caveat: weed shares this machine's {os.cpu_count()} cores with the worker on "
          f"loopback; its CPU is taken from the pipeline, which a remote store would not take")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    benchlib.common_arguments(parser)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1,
                        help="uncounted rounds first (default 1)")
    parser.add_argument("--work-factor", type=int, default=18)
    parser.add_argument("--level", type=int,
                        help="zstd level (default: H4_ZSTD_LEVEL, as the worker)")
    parser.add_argument("--threads", type=int,
                        help="zstd threads (default: H4_ZSTD_THREADS, as the worker)")
    parser.add_argument("--part-size-mib", type=int, help="S3Options.part_size, in MiB")
    parser.add_argument("--parts-in-flight", type=int, help="S3Options.parts_in_flight")
    parser.add_argument("--checksum", choices=("when_supported", "when_required"),
                        help="botocore request_checksum_calculation of the S3 client "
                             "(default: botocore's, when_supported: a CRC32 of every part)")
    parser.add_argument("--unsigned-payload", action="store_true",
                        help="no SHA-256 of each part in the signature (botocore signs the "
                             "payload over plain http unless told not to)")
    parser.add_argument("--child", choices=("folder", "s3"), help=argparse.SUPPRESS)
    for hidden in ("--tree", "--out"):
        parser.add_argument(hidden, type=Path, help=argparse.SUPPRESS)
    for hidden in ("--bucket", "--endpoint", "--prefix", "--region"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is None and (args.level is None or args.threads is None):
        from common.config import load_settings

        settings = load_settings()
        args.level = args.level or settings.zstd_level
        args.threads = args.threads or settings.zstd_threads
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    from tests.integration.objectstore import ObjectStore, unique_bucket_name

    print(benchlib.load_note())
    started = time.monotonic()
    with benchlib.work_folder(args, "storage") as work:
        tree = benchlib.dataset(args, work)
        files, size = benchlib.tree_bytes(tree)
        print(f"data set: {files} files, {size / MIB:.0f} MiB ({size / benchlib.MB:.0f} MB)")
        # A backup each in the folder and the store, and the store's deleted volumes, which it
        # reclaims only later.
        benchlib.require_space(work, size * (args.rounds + args.warmup + 2))
        (work / "out").mkdir()
        with ObjectStore(work / "weed") as store:
            bucket = store.create_bucket(unique_bucket_name("bench"))
            print(f"SeaweedFS {store.weed.name} mini on {store.endpoint} (pid {store.pid}), "
                  f"started in {store.startup_seconds:.1f} s; zstd level {args.level}, "
                  f"{args.threads} threads; scrypt work factor {args.work_factor}")
            bench = Bench(args, tree, work / "out", store, bucket)
            label = s3_label(args)
            print(f"\n== backup: folder vs {label}, {args.rounds} rounds, alternating, "
                  f"each backup in a fresh worker-like process")
            if args.warmup:
                benchlib.alternate(bench.contenders(), args.warmup)
                print(f"(warm-up round{'s' if args.warmup > 1 else ''} above, not counted)")
            benchlib.alternate(bench.contenders(), args.rounds)
            print()
            report(bench, size, label)
    print(f"({time.monotonic() - started:.0f} s in all)")
    print(benchlib.load_note())
    return 0


if __name__ == "__main__":
    sys.exit(main())
