"""Backup throughput of the worker's pipeline against `tar | zstd | age`, on the same data.

    .venv/bin/python -m bench.backup_speed --size 1GiB --rounds 5 [--level 1]
    .venv/bin/python -m bench.backup_speed --sweep 1,2,3:2,3     # zstd levels : threads

Ours is `run_backup` in this process, exactly what a worker runs for a task, fsync included,
at the worker's zstd level and threads (H4_ZSTD_LEVEL, H4_ZSTD_THREADS) unless --level and
--threads say otherwise. Theirs is the script an administrator would write instead,
`tar -c | zstd -3 -T0 | age -r KEY > FILE`, with no fsync. Both encrypt to the same X25519
recipient (the payload cipher is the same as with a passphrase); with --passphrase both use
scrypt at work factor 18 instead, `age -p` being driven through expect, since it reads the
passphrase from a terminal. The rounds alternate (ours, theirs, ours, ...) so that a busy
moment of the machine hits both; the medians, the CPU seconds each used and the ratio are
printed. Then the pipeline's own limits on this machine: zstd alone (same level and threads,
on the same file bytes, output thrown away), SHA-512 alone (over the stored backup, one core)
and SHA-256 alone (each file, as the manifest needs), and from their CPU seconds the floor:
the soonest any pipeline doing that work could end on this machine's cores.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import statistics
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import zstandard  # noqa: E402

from bench import benchlib  # noqa: E402
from common.backupfile.format.age import generate_x25519_identity  # noqa: E402
from common.backupfile.io.folder import FolderStorage  # noqa: E402
from common.backupfile.write.pipeline import BackupJob, run_backup  # noqa: E402
from common.backupfile.write.sources import Source  # noqa: E402
from common.config import load_settings  # noqa: E402

_BLOCK = 1 << 20
_EXPECT = """set timeout 600
spawn -noecho bash -c {{{command}}}
expect "passphrase*:" {{ send "{password}\\r" }}
expect "passphrase*:" {{ send "{password}\\r" }}
expect eof
catch wait result
exit [lindex $result 3]
"""


@dataclass
class Setup:
    tree: Path
    out: Path
    recipient: str
    passphrase: bool
    level: int
    threads: int


def ours(setup: Setup, level: int | None = None, threads: int | None = None) -> float:
    seconds, stored = backup_once(setup, level, threads)
    stored.unlink()
    return seconds


def backup_once(setup: Setup, level: int | None = None,
                threads: int | None = None) -> tuple[float, Path]:
    """Seconds for one backup, and the file it stored."""
    keys = ({"passphrase": benchlib.PASSPHRASE} if setup.passphrase
            else {"recipients": (setup.recipient,)})
    job = BackupJob(uuid.uuid4().hex, (Source(setup.tree.name, setup.tree),),
                    FolderStorage(setup.out),
                    zstd_level=level or setup.level, zstd_threads=threads or setup.threads,
                    work_factor=18, **keys)
    seconds, outcome = benchlib.timed_result(lambda: run_backup(job, benchlib.QuietReporter()))
    return seconds, setup.out / outcome.file_name


def theirs(setup: Setup) -> float:
    out = setup.out / "theirs.tar.zst.age"
    tar = f"tar -cf - -C {shlex.quote(str(setup.tree.parent))} {shlex.quote(setup.tree.name)}"
    command = f"{tar} | zstd -3 -T0 -q | age"
    if setup.passphrase:
        script = _EXPECT.format(command=f"{command} -p -o {out}", password=benchlib.PASSPHRASE)
        seconds = benchlib.timed(lambda: benchlib.run_shell(f"expect -c {shlex.quote(script)}"
                                                            " > /dev/null"))
    else:
        seconds = benchlib.timed(lambda: benchlib.run_shell(
            f"{command} -r {setup.recipient} > {shlex.quote(str(out))}"))
    out.unlink()
    return seconds


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)


def zstd_alone(setup: Setup) -> float:
    """The same file bytes through the same compressor, without tar, hashing or encryption."""
    compressor = zstandard.ZstdCompressor(level=setup.level, threads=setup.threads)
    view = memoryview(bytearray(_BLOCK))

    def run() -> None:
        with compressor.stream_writer(_Discard(), write_size=_BLOCK) as sink:
            for path in _files(setup.tree):
                with open(path, "rb", buffering=0) as source:
                    while got := source.readinto(view):
                        sink.write(view[:got])

    return benchlib.timed(run)


def sha512_alone(path: Path) -> float:
    def run() -> None:
        sha512, view = hashlib.sha512(), memoryview(bytearray(_BLOCK))
        with open(path, "rb", buffering=0) as stored:
            while got := stored.readinto(view):
                sha512.update(view[:got])

    return benchlib.timed(run)


def _files(tree: Path):
    for folder, dirs, names in os.walk(tree):
        dirs.sort()
        yield from (os.path.join(folder, name) for name in sorted(names))


def compare(setup: Setup, args: argparse.Namespace, size: int) -> float:
    """Ours against theirs; returns theirs' median seconds."""
    print(f"\n== backup: ours vs theirs, {args.rounds} rounds, alternating "
          f"({'scrypt passphrase' if setup.passphrase else 'X25519 recipient'})")
    benchlib.alternate({"ours": lambda: ours(setup), "theirs": lambda: theirs(setup)}, 1)
    print("(warm-up round above, not counted)")
    times = benchlib.alternate({"ours": lambda: ours(setup), "theirs": lambda: theirs(setup)},
                               args.rounds)
    names = {"ours": f"ours: run_backup (zstd -{setup.level}, {setup.threads} threads)",
             "theirs": "theirs: tar | zstd -3 -T0 | age"}
    rows = benchlib.rate_rows(times, size, "theirs")
    benchlib.print_table([(names[row[0]], *row[1:]) for row in rows],
                         benchlib.rate_header("theirs"))
    ratio = statistics.median(times["theirs"]) / statistics.median(times["ours"])
    print(f"backup speed ratio ours/theirs: {ratio:.2f}x (goal >= 1.5x)")
    return statistics.median(times["theirs"])


def sha256_alone(setup: Setup) -> float:
    """Each file's SHA-256, as the manifest records it, over the same file bytes."""
    view = memoryview(bytearray(_BLOCK))

    def run() -> None:
        for path in _files(setup.tree):
            sha256 = hashlib.sha256()
            with open(path, "rb", buffering=0) as source:
                while got := source.readinto(view):
                    sha256.update(view[:got])

    return benchlib.timed(run)


def limits(setup: Setup, args: argparse.Namespace, size: int, theirs: float) -> None:
    print(f"\n== the pipeline's own limits, {args.limit_rounds} rounds, alternating")
    _, path = backup_once(setup)
    stored = path.stat().st_size
    # The backup was written past the page cache; read it once so that SHA-512 alone times
    # the hashing, not the disk.
    sha512_alone(path)
    times = benchlib.alternate({
        "ours": lambda: ours(setup), "zstd alone": lambda: zstd_alone(setup),
        "sha512 alone": lambda: sha512_alone(path),
        "sha256 alone": lambda: sha256_alone(setup)}, args.limit_rounds)
    path.unlink()
    ours_median = statistics.median(times["ours"])
    print(f"stored {stored / (1 << 20):.0f} MiB for {size / (1 << 20):.0f} MiB of files "
          f"({stored / size:.2f})")
    for name, scale in (("zstd alone", size), ("sha512 alone", stored),
                        ("sha256 alone", size)):
        median = statistics.median(times[name])
        print(f"{name}: {scale / benchlib.MB / median:.0f} MB/s of "
              f"{'file' if scale == size else 'stored'} bytes, {size / benchlib.MB / median:.0f}"
              f" MB/s of file bytes; ours reaches {median / ours_median:.0%} of it")
    print(f"ours: {size / benchlib.MB / ours_median:.0f} MB/s")
    print_floor(times, size, theirs)


def print_floor(times: dict[str, list[float]], size: int, theirs: float) -> None:
    """The work every backup must do (compress, hash the stored bytes, hash each file) in CPU
    seconds, spread perfectly over every core: no pipeline can finish sooner."""
    parts = ("zstd alone", "sha512 alone", "sha256 alone")
    work = sum(statistics.median(benchlib.CPU_SECONDS[name][-len(times[name]):])
               for name in parts)
    cores = os.cpu_count() or 1
    floor = work / cores
    ours_cpu = statistics.median(benchlib.CPU_SECONDS["ours"][-len(times["ours"]):])
    print(f"required work: {work:.1f} CPU s (zstd, SHA-512, SHA-256, each reading its input; "
          f"ours uses "
          f"{ours_cpu:.1f}); on {cores} cores no backup ends before {floor:.2f} s "
          f"({size / benchlib.MB / floor:.0f} MB/s): at most {theirs / floor:.2f}x theirs")


def sweep(setup: Setup, args: argparse.Namespace, size: int) -> None:
    levels, threads = (list(map(int, part.split(","))) for part in args.sweep.split(":"))
    combos = [(level, count) for level in levels for count in threads]
    print(f"\n== zstd level and threads of ours, {args.limit_rounds} rounds, alternating")
    stored: dict[str, int] = {}

    def run(level: int, count: int) -> float:
        seconds, path = backup_once(setup, level, count)
        stored[f"{level}:{count}"] = path.stat().st_size
        path.unlink()
        return seconds

    times = benchlib.alternate({f"{level}:{count}": lambda lc=(level, count): run(*lc)
                                for level, count in combos}, args.limit_rounds)
    rows = [(*name.split(":"), f"{statistics.median(values):.2f}",
             f"{size / benchlib.MB / statistics.median(values):.0f}",
             f"{stored[name] / size:.3f}") for name, values in times.items()]
    benchlib.print_table(rows, ("level", "threads", "median s", "MB/s", "stored/source"))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    benchlib.common_arguments(parser)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--limit-rounds", type=int, default=3)
    parser.add_argument("--level", type=int,
                        help="zstd level of ours (default: H4_ZSTD_LEVEL, as the worker)")
    parser.add_argument("--threads", type=int,
                        help="zstd threads of ours (default: H4_ZSTD_THREADS, as the worker)")
    parser.add_argument("--passphrase", action="store_true",
                        help="scrypt passphrase (age -p through expect) instead of X25519")
    parser.add_argument("--sweep", metavar="LEVELS:THREADS",
                        help="only time ours at each level and thread count, e.g. 1,3:1,2")
    args = parser.parse_args(argv)
    settings = load_settings()
    args.level = args.level or settings.zstd_level
    args.threads = args.threads or settings.zstd_threads
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    benchlib.require_tools("tar", "zstd", "age", *(["expect"] if args.passphrase else []))
    print(benchlib.load_note())
    with benchlib.work_folder(args, "backup") as work:
        tree = benchlib.dataset(args, work)
        files, size = benchlib.tree_bytes(tree)
        print(f"{files} files, {size / (1 << 20):.0f} MiB")
        (work / "out").mkdir()
        setup = Setup(tree, work / "out", generate_x25519_identity()[1], args.passphrase,
                      args.level, args.threads)
        if args.sweep:
            sweep(setup, args, size)
        else:
            theirs_seconds = compare(setup, args, size)
            limits(setup, args, size, theirs_seconds)
    print(benchlib.load_note())
    return 0


if __name__ == "__main__":
    sys.exit(main())
