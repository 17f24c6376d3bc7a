"""Backup throughput of the worker's pipeline against the administrator's script, same result.

    .venv/bin/python -m bench.backup_speed --size 1GiB --rounds 5 [--level 1] [--x25519]
    .venv/bin/python -m bench.backup_speed --sweep 1,2,3:2,3     # zstd levels : threads

A backup is a passphrase (scrypt, work factor 18) age v1 file plus the SHA-512 of its stored
bytes. Ours is `run_backup` with a passphrase in this process, exactly what a worker runs for a
task, fsync included, at the worker's zstd level and threads (H4_ZSTD_LEVEL, H4_ZSTD_THREADS)
unless --level and --threads say otherwise. The script is what an administrator would write
for the same result, `tar -c | zstd -3 -T0 | age -p | tee FILE | sha512sum`, `age -p` being
driven through expect since it reads the passphrase from a terminal; it does no fsync. With
--x25519 a second pair runs in the same rounds: both encrypt to one X25519 recipient, and the
script has no tee and no SHA-512 (`... | age -r KEY > FILE`). The rounds alternate (ours,
script, ...) so that a busy moment of the machine hits each; the medians, ranges, CPU seconds,
stored sizes and ratios are printed. With --cold (root) the page cache is dropped before each
run, so that both read the files from the disk, as a backup of files nobody read lately does.

Then the floor: the work every backup must do, each part measured alone on this machine, in
CPU seconds: zstd at our level and threads over the file bytes, the SHA-512 of the stored
bytes, the hash of each file the manifest needs (format/filehash.py; SHA-256, which older
backups used, is measured beside it), and age's payload encryption, ChaCha20-Poly1305 in
64 KiB chunks, over the compressed bytes, and the key derivation (scrypt at work factor 18,
once per backup; the script's `age -p` pays it too). Spread perfectly over the cores, that is
the soonest any pipeline doing the work could end. The floor without scrypt is printed beside
it: ours derives the key before the pipeline starts, on one core.
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
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305  # noqa: E402

from bench import benchlib  # noqa: E402
from common.backupfile.format.age import (  # noqa: E402
    CHUNK_SIZE,
    _scrypt_key,
    generate_x25519_identity,
)
from common.backupfile.format.filehash import CURRENT, new_hasher  # noqa: E402
from common.backupfile.io.folder import FolderStorage  # noqa: E402
from common.backupfile.write.pipeline import BackupJob, run_backup  # noqa: E402
from common.backupfile.write.sources import Source  # noqa: E402
from common.config import load_settings  # noqa: E402

_BLOCK = 1 << 20
_WORK_FACTOR = 18
_EXPECT = """set timeout 600
spawn -noecho bash -c {{{command}}}
expect "passphrase*:" {{ send "{password}\\r" }}
expect "passphrase*:" {{ send "{password}\\r" }}
expect eof
catch wait result
exit [lindex $result 3]
"""
_NAMES = {"ours": "ours: run_backup, passphrase, SHA-512, fsync",
          "script": "script: tar | zstd -3 -T0 | age -p | tee | sha512sum",
          "ours x25519": "ours: run_backup, X25519",
          "script x25519": "script: tar | zstd -3 -T0 | age -r > FILE"}


@dataclass
class Setup:
    tree: Path
    out: Path
    recipient: str
    level: int
    threads: int


# Stored sizes in bytes, by contender: the last file each wrote.
STORED: dict[str, int] = {}


def ours(setup: Setup, x25519: bool = False, level: int | None = None,
         threads: int | None = None) -> float:
    seconds, stored = backup_once(setup, x25519, level, threads)
    STORED["ours x25519" if x25519 else "ours"] = stored.stat().st_size
    stored.unlink()
    return seconds


def backup_once(setup: Setup, x25519: bool = False, level: int | None = None,
                threads: int | None = None) -> tuple[float, Path]:
    """Seconds for one backup, and the file it stored."""
    keys = ({"recipients": (setup.recipient,)} if x25519
            else {"passphrase": benchlib.PASSPHRASE})
    job = BackupJob(uuid.uuid4().hex, (Source(setup.tree.name, setup.tree),),
                    FolderStorage(setup.out),
                    zstd_level=level or setup.level, zstd_threads=threads or setup.threads,
                    work_factor=_WORK_FACTOR, **keys)
    seconds, outcome = benchlib.timed_result(lambda: run_backup(job, benchlib.QuietReporter()))
    return seconds, setup.out / outcome.file_name


def script(setup: Setup, x25519: bool = False) -> float:
    out = setup.out / "script.tar.zst.age"
    tar = f"tar -cf - -C {shlex.quote(str(setup.tree.parent))} {shlex.quote(setup.tree.name)}"
    command = f"{tar} | zstd -3 -T0 -q | age"
    if x25519:
        seconds = benchlib.timed(lambda: benchlib.run_shell(
            f"{command} -r {setup.recipient} > {shlex.quote(str(out))}"))
    else:
        piped = f"{command} -p | tee {shlex.quote(str(out))} | sha512sum"
        expect = _EXPECT.format(command=piped, password=benchlib.PASSPHRASE)
        seconds = benchlib.timed(lambda: benchlib.run_shell(
            f"expect -c {shlex.quote(expect)} > /dev/null"))
    STORED["script x25519" if x25519 else "script"] = out.stat().st_size
    out.unlink()
    return seconds


def compare(setup: Setup, args: argparse.Namespace, size: int) -> float:
    """Ours against the script; returns the script's median seconds."""
    contenders = {"ours": lambda: ours(setup), "script": lambda: script(setup)}
    if args.x25519:
        contenders |= {"ours x25519": lambda: ours(setup, x25519=True),
                       "script x25519": lambda: script(setup, x25519=True)}
    if args.cold:
        contenders = {name: benchlib.from_cold(run) for name, run in contenders.items()}
    print(f"\n== backup: ours vs the script, {args.rounds} rounds, alternating"
          + (", the page cache dropped before each run" if args.cold else ""))
    benchlib.alternate(contenders, 1)
    print("(warm-up round above, not counted)")
    times = benchlib.alternate(contenders, args.rounds)
    rows = benchlib.rate_rows(times, size, "script")
    benchlib.print_table([(_NAMES[row[0]], *row[1:], f"{STORED[row[0]] / (1 << 20):.0f}")
                          for row in rows], (*benchlib.rate_header("script"), "stored MiB"))
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"backup speed ratio ours/script: {median['script'] / median['ours']:.2f}x "
          f"(goal >= 1.5x), zstd -{setup.level} against -3")
    print(f"stored size ours/script: {STORED['ours'] / STORED['script']:.3f} "
          f"({STORED['ours'] / (1 << 20):.0f} against {STORED['script'] / (1 << 20):.0f} MiB; "
          f"goal <= 1.10); stored/files: {STORED['ours'] / size:.3f} against "
          f"{STORED['script'] / size:.3f}")
    if args.x25519:
        print(f"X25519, no SHA-512 on the script's side: ours/script "
              f"{median['script x25519'] / median['ours x25519']:.2f}x")
    return median["script"]


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


def _each_block(path: Path, use) -> None:
    view = memoryview(bytearray(_BLOCK))
    with open(path, "rb", buffering=0) as source:
        while got := source.readinto(view):
            use(view[:got])


def sha512_alone(path: Path) -> float:
    """The stored bytes' SHA-512, as the catalogue records it."""
    return benchlib.timed(lambda: _each_block(path, hashlib.sha512().update))


def chacha_alone(path: Path) -> float:
    """age's payload encryption, 64 KiB chunks sealed one by one, over as many bytes as the
    backup stores (its own, read back)."""
    aead = ChaCha20Poly1305(os.urandom(32))
    sealed = bytearray(CHUNK_SIZE + 16)

    def seal(block: memoryview) -> None:
        for start in range(0, len(block), CHUNK_SIZE):
            chunk = block[start:start + CHUNK_SIZE]
            aead.encrypt_into(bytes(12), chunk, None, memoryview(sealed)[:len(chunk) + 16])

    return benchlib.timed(lambda: _each_block(path, seal))


def file_hash_alone(setup: Setup, name: str) -> float:
    """Each file's hash, as the manifest records it, over the same file bytes."""
    def run() -> None:
        for path in _files(setup.tree):
            _each_block(Path(path), new_hasher(name).update)

    return benchlib.timed(run)


def scrypt_alone() -> float:
    return benchlib.timed(lambda: _scrypt_key(b"passphrase", bytes(16), _WORK_FACTOR))


def _files(tree: Path):
    for folder, dirs, names in os.walk(tree):
        dirs.sort()
        yield from (os.path.join(folder, name) for name in sorted(names))


# Every passphrase backup does each part; scrypt once, on the passphrase (the script's
# `age -p` does too), the others over the bytes named.
_PARTS = {"zstd alone": "file", "sha512 alone": "stored", f"{CURRENT} alone": "file",
          "chacha20-poly1305 alone": "stored", "scrypt alone": "key"}


def limits(setup: Setup, args: argparse.Namespace, size: int, script_seconds: float) -> None:
    print(f"\n== the floor: each part of the work alone, {args.limit_rounds} rounds, "
          "alternating with ours")
    _, path = backup_once(setup)
    stored = path.stat().st_size
    # The backup was written past the page cache; read it once so that the parts reading it
    # time their work, not the disk.
    sha512_alone(path)
    times = benchlib.alternate({
        "ours": lambda: ours(setup), "zstd alone": lambda: zstd_alone(setup),
        "sha512 alone": lambda: sha512_alone(path),
        f"{CURRENT} alone": lambda: file_hash_alone(setup, CURRENT),
        "chacha20-poly1305 alone": lambda: chacha_alone(path),
        "sha256 alone": lambda: file_hash_alone(setup, "sha256"),
        "scrypt alone": scrypt_alone}, args.limit_rounds)
    path.unlink()
    for name in (*_PARTS, "sha256 alone"):
        cpu = _median_cpu(name, times)
        over = stored if _PARTS.get(name) == "stored" else size
        rate = f"{over / benchlib.MB / cpu:.0f} MB/s of {_PARTS.get(name, 'file')} bytes"
        print(f"  {name}: {cpu:.2f} CPU s (wall {statistics.median(times[name]):.2f} s)"
              + ("  [once per backup, on one core]" if name == "scrypt alone" else f", {rate}")
              + ("  [not in the floor: the files' hash before BLAKE3]"
                 if name == "sha256 alone" else ""))
    print_floor(times, size, script_seconds)


def _median_cpu(name: str, times: dict[str, list[float]]) -> float:
    return statistics.median(benchlib.CPU_SECONDS[name][-len(times[name]):])


def print_floor(times: dict[str, list[float]], size: int, script_seconds: float) -> None:
    """The work every backup must do in CPU seconds, spread perfectly over every core: no
    pipeline can finish sooner."""
    work = sum(_median_cpu(name, times) for name in _PARTS)
    cores = os.cpu_count() or 1
    floor = work / cores
    ours_seconds, ours_cpu = statistics.median(times["ours"]), _median_cpu("ours", times)
    scrypt = _median_cpu("scrypt alone", times)
    print(f"the floor: {work:.2f} CPU s of required work ({' + '.join(_PARTS)}) on {cores} "
          f"cores: {floor:.2f} s, {size / benchlib.MB / floor:.0f} MB/s (without scrypt: "
          f"{(work - scrypt) / cores:.2f} s)")
    print(f"ours: {ours_seconds:.2f} s, {size / benchlib.MB / ours_seconds:.0f} MB/s, "
          f"{ours_cpu:.2f} CPU s, {ours_cpu / ours_seconds / cores:.0%} of the cores busy; "
          f"the floor's work is {work / ours_cpu:.0%} of ours' CPU")
    print(f"ours/floor: {floor / ours_seconds:.2f} (goal >= 0.9); ours/script: "
          f"{script_seconds / ours_seconds:.2f}x (goal >= 1.5x); the floor is "
          f"{script_seconds / floor:.2f}x the script")


def sweep(setup: Setup, args: argparse.Namespace, size: int) -> None:
    levels, threads = (list(map(int, part.split(","))) for part in args.sweep.split(":"))
    combos = [(level, count) for level in levels for count in threads]
    print(f"\n== zstd level and threads of ours, {args.limit_rounds} rounds, alternating")
    stored: dict[str, int] = {}

    def run(level: int, count: int) -> float:
        seconds, path = backup_once(setup, level=level, threads=count)
        stored[f"{level}:{count}"] = path.stat().st_size
        path.unlink()
        return seconds

    times = benchlib.alternate({f"{level}:{count}": lambda lc=(level, count): run(*lc)
                                for level, count in combos}, args.limit_rounds)
    rows = [(*name.split(":"), f"{statistics.median(values):.2f}",
             f"{size / benchlib.MB / statistics.median(values):.0f}",
             f"{_median_cpu(name, times):.2f}", f"{stored[name] / size:.3f}")
            for name, values in times.items()]
    benchlib.print_table(rows, ("level", "threads", "median s", "MB/s", "CPU s",
                                "stored/source"))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    benchlib.common_arguments(parser)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--limit-rounds", type=int, default=3)
    parser.add_argument("--level", type=int,
                        help="zstd level of ours (default: H4_ZSTD_LEVEL, as the worker)")
    parser.add_argument("--threads", type=int,
                        help="zstd threads of ours (default: H4_ZSTD_THREADS, as the worker)")
    parser.add_argument("--x25519", action="store_true",
                        help="also compare both sides encrypting to an X25519 recipient, the "
                             "script without tee and SHA-512")
    parser.add_argument("--cold", action="store_true",
                        help="drop the page cache before each run of the comparison, as for "
                             "files nobody read lately (needs root; the floor stays warm)")
    parser.add_argument("--sweep", metavar="LEVELS:THREADS",
                        help="only time ours at each level and thread count, e.g. 1,3:1,2")
    args = parser.parse_args(argv)
    settings = load_settings()
    args.level = args.level or settings.zstd_level
    args.threads = args.threads or settings.zstd_threads
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    benchlib.require_tools("tar", "zstd", "age", "expect", "tee", "sha512sum")
    print(benchlib.machine_note())
    print(benchlib.load_note())
    with benchlib.work_folder(args, "backup") as work:
        tree = benchlib.dataset(args, work)
        files, size = benchlib.tree_bytes(tree)
        print(f"{files} files, {size / (1 << 20):.0f} MiB")
        (work / "out").mkdir()
        setup = Setup(tree, work / "out", generate_x25519_identity()[1], args.level,
                      args.threads)
        if args.sweep:
            sweep(setup, args, size)
        else:
            script_seconds = compare(setup, args, size)
            limits(setup, args, size, script_seconds)
    print(benchlib.load_note())
    return 0


if __name__ == "__main__":
    sys.exit(main())
