"""Restore throughput of the worker against `age -d | zstd -d | tar -x`, on the same backup file.

    .venv/bin/python -m bench.restore_speed --size 1GiB --rounds 5 [--x25519]

One backup of the data set is made with the worker's pipeline, encrypted to a passphrase
(scrypt, work factor 18) as in bench/backup_speed.py's default comparison, or with --x25519 to
an X25519 recipient. Ours is `run_restore` in this process, what a worker runs for a restore
task: the SHA-512 of the stored bytes checked against the catalogue, every member checked,
every file's hash proved against the manifest, and everything on disk (one filesystem sync)
before the folder is renamed into place. Theirs is `age -d FILE | zstd -d | tar -x -C DIR`
(`age -d` driven through expect for the passphrase, or given `-i KEY`), which checks none of
that and leaves the files in the page cache; `theirs + sync` adds `sync -f DIR` for the same
durability as ours. The rounds alternate; medians and ratios are printed, then decryption and
decompression alone (same file, output thrown away) as the limit of this pass.

Restored trees are kept until the end of the run, which needs free space for all of them
(about 3 x (rounds + 1) times the data set): deleting thousands of files just before a round
would time the filesystem's handling of inodes freed moments ago (ext4 without a journal scans
past each of them for a minute), not the restore.
"""

from __future__ import annotations

import argparse
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
from common.backupfile.format.age import AgeReader, generate_x25519_identity  # noqa: E402
from common.backupfile.io.folder import FolderStorage, stored_at  # noqa: E402
from common.backupfile.read.restore import RestoreJob, run_restore  # noqa: E402
from common.backupfile.write.pipeline import BackupJob, BackupOutcome, run_backup  # noqa: E402
from common.backupfile.write.sources import Source  # noqa: E402

_BLOCK = 1 << 20
_EXPECT = """set timeout 600
spawn -noecho bash -c {{{command}}}
expect "passphrase*:" {{ send "{password}\\r" }}
expect eof
catch wait result
exit [lindex $result 3]
"""


@dataclass
class Setup:
    backup: BackupOutcome
    backup_path: Path
    identity: str
    key_file: Path
    restores: Path
    passphrase: bool


def ours(setup: Setup) -> float:
    keys = ({"passphrase": benchlib.PASSPHRASE} if setup.passphrase
            else {"identities": (setup.identity,)})
    job = RestoreJob(setup.backup.backup_id, *stored_at(setup.backup_path), setup.restores,
                     expected_hash=setup.backup.hash,
                     target_name=f"ours-{uuid.uuid4().hex[:8]}", **keys)
    seconds, outcome = benchlib.timed_result(lambda: run_restore(job, benchlib.QuietReporter()))
    if (outcome.files, outcome.bytes) != (setup.backup.files, setup.backup.source_bytes):
        raise SystemExit("ours restored something else than was backed up")
    return seconds


def theirs(setup: Setup, sync: bool) -> float:
    out = setup.restores / f"theirs-{uuid.uuid4().hex[:8]}"
    out.mkdir()
    quoted = shlex.quote(str(out))
    key = "" if setup.passphrase else f"-i {shlex.quote(str(setup.key_file))} "
    script = (f"age -d {key}{shlex.quote(str(setup.backup_path))} | zstd -d -q "
              f"| tar -x -C {quoted}" + (f" && sync -f {quoted}" if sync else ""))
    if setup.passphrase:
        script = "expect -c " + shlex.quote(_EXPECT.format(
            command=f"set -euo pipefail; {script}", password=benchlib.PASSPHRASE)) + " > /dev/null"
    return benchlib.timed(lambda: benchlib.run_shell(script))


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)


def decompress_alone(setup: Setup) -> float:
    """Decryption and decompression of the same file, output thrown away, on one thread."""
    def run() -> None:
        with open(setup.backup_path, "rb") as stored:
            source = (AgeReader(stored, passphrase=benchlib.PASSPHRASE) if setup.passphrase
                      else AgeReader(stored, identities=[setup.identity]))
            zstandard.ZstdDecompressor().copy_stream(source, _Discard(), read_size=_BLOCK,
                                                     write_size=_BLOCK)

    return benchlib.timed(run)


def make_backup(tree: Path, folder: Path, recipient: str, passphrase: bool) -> BackupOutcome:
    folder.mkdir()
    keys = {"passphrase": benchlib.PASSPHRASE} if passphrase else {"recipients": (recipient,)}
    job = BackupJob("bench", (Source(tree.name, tree),), FolderStorage(folder), **keys)
    seconds, outcome = benchlib.timed_result(lambda: run_backup(job, benchlib.QuietReporter()))
    print(f"backup: {outcome.files} files, {outcome.size / (1 << 20):.0f} MiB stored "
          f"in {seconds:.1f} s")
    return outcome


def compare(setup: Setup, args: argparse.Namespace, size: int) -> None:
    contenders = {"ours": lambda: ours(setup), "theirs": lambda: theirs(setup, False),
                  "theirs + sync": lambda: theirs(setup, True)}
    print(f"\n== restore: ours vs theirs, {args.rounds} rounds, alternating "
          f"({'X25519 recipient' if args.x25519 else 'scrypt passphrase'})")
    benchlib.alternate(contenders, 1)
    print("(warm-up round above, not counted)")
    times = benchlib.alternate(contenders, args.rounds)
    names = {"ours": "ours: run_restore (checked, durable)",
             "theirs": "theirs: age -d | zstd -d | tar -x",
             "theirs + sync": "theirs + sync: ... && sync -f DIR"}
    rows = benchlib.rate_rows(times, size, "theirs")
    benchlib.print_table([(names[row[0]], *row[1:]) for row in rows],
                         benchlib.rate_header("theirs"))
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"restore speed ratio ours/theirs: {median['theirs'] / median['ours']:.2f}x "
          f"(goal >= 1.3x); ours/(theirs + sync): "
          f"{median['theirs + sync'] / median['ours']:.2f}x")


def limits(setup: Setup, args: argparse.Namespace, size: int) -> None:
    print(f"\n== the limit of this pass, {args.limit_rounds} rounds, alternating")
    times = benchlib.alternate({"ours": lambda: ours(setup),
                                "age + zstd -d alone": lambda: decompress_alone(setup)},
                               args.limit_rounds)
    ours_median = statistics.median(times["ours"])
    alone = statistics.median(times["age + zstd -d alone"])
    print(f"age + zstd -d alone (one thread): {size / benchlib.MB / alone:.0f} MB/s of file "
          f"bytes; ours: {size / benchlib.MB / ours_median:.0f} MB/s "
          f"({alone / ours_median:.0%} of it)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    benchlib.common_arguments(parser)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--limit-rounds", type=int, default=3)
    parser.add_argument("--x25519", action="store_true",
                        help="encrypt to an X25519 recipient instead of a passphrase")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    benchlib.require_tools("tar", "zstd", "age", "expect")
    print(benchlib.machine_note())
    print(benchlib.load_note())
    with benchlib.work_folder(args, "restore") as work:
        tree = benchlib.dataset(args, work)
        files, size = benchlib.tree_bytes(tree)
        print(f"{files} files, {size / (1 << 20):.0f} MiB")
        identity, recipient = generate_x25519_identity()
        key_file = work / "key.txt"
        key_file.write_text(identity + "\n")
        os.chmod(key_file, 0o600)
        backup = make_backup(tree, work / "backups", recipient, not args.x25519)
        (work / "restores").mkdir()
        benchlib.require_space(work, size * (3 * (args.rounds + 1) + args.limit_rounds))
        setup = Setup(backup, work / "backups" / backup.file_name, identity, key_file,
                      work / "restores", not args.x25519)
        compare(setup, args, size)
        limits(setup, args, size)
    print(benchlib.load_note())
    return 0


if __name__ == "__main__":
    sys.exit(main())
