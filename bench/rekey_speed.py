"""Rekey time of a stored backup against one SHA-512 pass over the same file.

    .venv/bin/python -m bench.rekey_speed --size 1GiB --rounds 3 [--work-factor 18]

One backup of --size random (incompressible) bytes is made with the worker's pipeline into a
folder, encrypted to a passphrase. Each round then times, in turn and with the file in the page
cache: one SHA-512 pass over the file (Python's hashlib in 1 MiB reads, and `openssl dgst
-sha512`), `run_rekey` from a passphrase to another passphrase (the same header length: the
head is rewritten in place), from a passphrase to an X25519 recipient, and back from the
recipient to a passphrase (other header lengths: a new file is written as it is hashed).

A rekey must prove the listed SHA-512 and take the new one, so it hashes the file twice; the
two passes overlap each other and the scrypts, so the goal is one pass plus a second. A
passphrase needs a scrypt for the old header and one for the new: they run at once, and their
time alone is printed, since at work factor 18 it is about one SHA-512 pass on its own.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import benchlib  # noqa: E402
from common.backupfile.format.age import _scrypt_key, generate_x25519_identity  # noqa: E402
from common.backupfile.io.folder import FolderStorage  # noqa: E402
from common.backupfile.write.pipeline import BackupJob, run_backup  # noqa: E402
from common.backupfile.write.rekey import RekeyJob, run_rekey  # noqa: E402
from common.backupfile.write.sources import Source  # noqa: E402

_BLOCK = 1 << 20
_SLACK_SECONDS = 1.0
PYTHON_PASS = "SHA-512 pass (hashlib)"
OPENSSL_PASS = "SHA-512 pass (openssl)"
TO_PASSPHRASE = "rekey passphrase -> passphrase"
TO_RECIPIENT = "rekey passphrase -> recipient"
BACK_TO_PASSPHRASE = "rekey recipient -> passphrase"


@dataclass
class Backup:
    """The stored backup and what opens it now, which every rekey changes."""

    storage: FolderStorage
    file_name: str
    hash: str
    work_factor: int
    identity: str
    recipient: str
    passphrase: str | None = benchlib.PASSPHRASE
    turn: int = 0
    sizes: set[int] = field(default_factory=set)

    @property
    def path(self) -> Path:
        return self.storage.folder / self.file_name

    def rekey(self, **keys: object) -> float:
        old = ({"passphrase": self.passphrase} if self.passphrase is not None
               else {"identities": (self.identity,)})
        job = RekeyJob("bench", self.storage, self.file_name, self.hash,
                       work_factor=self.work_factor, **old, **keys)  # type: ignore[arg-type]
        warm(self.path)
        seconds, outcome = benchlib.timed_result(
            lambda: run_rekey(job, benchlib.QuietReporter()))
        if outcome.finished_earlier:
            raise SystemExit("a rekey found its work done: the bench lost track of the key")
        self.hash = outcome.hash
        self.sizes.add(outcome.size)
        return seconds

    def to_passphrase(self) -> float:
        self.turn += 1
        new = f"{benchlib.PASSPHRASE} {self.turn}"
        seconds = self.rekey(new_passphrase=new)
        self.passphrase = new
        return seconds

    def to_recipient(self) -> float:
        seconds = self.rekey(new_recipients=(self.recipient,))
        self.passphrase = None
        return seconds


def warm(path: Path) -> None:
    """Reads the file once, untimed: a new file written with O_DIRECT is not in the cache."""
    with open(path, "rb", buffering=0) as stream:
        while stream.read(_BLOCK):
            pass


def python_pass(path: Path) -> float:
    warm(path)

    def run() -> None:
        digest = hashlib.sha512()
        with open(path, "rb", buffering=0) as stream:
            while block := stream.read(_BLOCK):
                digest.update(block)

    return benchlib.timed(run)


def openssl_pass(path: Path) -> float:
    warm(path)
    command = ["openssl", "dgst", "-sha512", str(path)]
    return benchlib.timed(lambda: subprocess.run(command, check=True, capture_output=True))


def scrypt_alone(work_factor: int, at_once: int) -> float:
    """Seconds for at_once scrypts run together, each on a thread of its own."""
    def one() -> None:
        _scrypt_key(b"bench", os.urandom(16), work_factor)

    def run() -> None:
        threads = [threading.Thread(target=one) for _ in range(at_once)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    return statistics.median(benchlib.timed(run) for _ in range(3))


def make_source(folder: Path, size: int) -> Path:
    """One file of random bytes: zstd cannot shrink it, so the backup is as large."""
    tree = folder / "data"
    tree.mkdir(parents=True)
    with open(tree / "random.bin", "wb") as out:
        for start in range(0, size, 16 * _BLOCK):
            out.write(os.urandom(min(16 * _BLOCK, size - start)))
    return tree


def make_backup(work: Path, size: int, work_factor: int) -> Backup:
    tree = make_source(work / "source", size)
    storage = FolderStorage(work / "backups")
    storage.prepare()
    job = BackupJob("bench", (Source("data", tree),), storage, passphrase=benchlib.PASSPHRASE,
                    work_factor=work_factor)
    seconds, outcome = benchlib.timed_result(lambda: run_backup(job, benchlib.QuietReporter()))
    print(f"backup: {outcome.size / (1 << 20):.0f} MiB stored in {seconds:.1f} s "
          f"(scrypt work factor {work_factor})")
    (work / "source" / "data" / "random.bin").unlink()
    identity, recipient = generate_x25519_identity()
    return Backup(storage, outcome.file_name, outcome.hash, work_factor, identity, recipient)


def report(times: dict[str, list[float]], backup: Backup, work_factor: int) -> None:
    size = backup.path.stat().st_size
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"\nfile size: {size} bytes ({size / (1 << 30):.2f} GiB); rekeyed sizes "
          f"{sorted(backup.sizes)}")
    rows = [(name, f"{median[name]:.2f}", f"{min(values):.2f}-{max(values):.2f}")
            for name, values in times.items()]
    benchlib.print_table(rows, ("", "median s", "range s"))
    one_pass = median[PYTHON_PASS]
    goal = one_pass + _SLACK_SECONDS
    print(f"\ngoal: rekey < one SHA-512 pass + {_SLACK_SECONDS:.0f} s = {one_pass:.2f} + "
          f"{_SLACK_SECONDS:.0f} = {goal:.2f} s")
    for name in (TO_PASSPHRASE, TO_RECIPIENT, BACK_TO_PASSPHRASE):
        verdict = "MET" if median[name] < goal else "NOT MET"
        print(f"  {name}: {median[name]:.2f} s - {verdict}")
    single, double = scrypt_alone(work_factor, 1), scrypt_alone(work_factor, 2)
    print(f"\nscrypt alone at work factor {work_factor}: {single:.2f} s for one, {double:.2f} s "
          f"for two at once (old and new passphrase, as a rekey runs them)")
    floor = double + one_pass
    print(f"a rekey cannot take less than its scrypts and then the new hash, which needs the "
          f"new header (the old hash runs beside it): passphrase -> passphrase >= "
          f"{double:.2f} + {one_pass:.2f} = {floor:.2f} s; from or to a recipient >= "
          f"{single:.2f} + {one_pass:.2f} = {single + one_pass:.2f} s, plus the end of "
          "writing the copy (another header length)")
    if floor >= goal:
        print(f"at work factor {work_factor} the passphrase -> passphrase line is bounded by "
              "scrypt, not by hashing: the goal cannot be met there on this machine")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    benchlib.common_arguments(parser)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work-factor", type=int, default=18,
                        help="scrypt work factor of every passphrase (default 18)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    benchlib.require_tools("openssl")
    print(benchlib.machine_note())
    print(benchlib.load_note())
    with benchlib.work_folder(args, "rekey") as work:
        benchlib.require_space(work, 3 * args.size)
        backup = make_backup(work, args.size, args.work_factor)
        contenders = {
            PYTHON_PASS: lambda: python_pass(backup.path),
            OPENSSL_PASS: lambda: openssl_pass(backup.path),
            TO_PASSPHRASE: backup.to_passphrase,
            TO_RECIPIENT: backup.to_recipient,
            BACK_TO_PASSPHRASE: backup.to_passphrase,
        }
        print(f"\n== {args.rounds} rounds, alternating, warm page cache")
        times = benchlib.alternate(contenders, args.rounds)
        report(times, backup, args.work_factor)
    print(benchlib.load_note())
    return 0


if __name__ == "__main__":
    sys.exit(main())
