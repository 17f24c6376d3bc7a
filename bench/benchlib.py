"""What the bench scripts share: the data set, temporary folders, rounds, medians, the table.

Every script is run by hand from the repository root with the project's virtualenv, e.g.
`.venv/bin/python -m bench.backup_speed` (or `.venv/bin/python bench/backup_speed.py`); none of
them is collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from bench.make_dataset import make_dataset, parse_size

ROOT = Path(__file__).resolve().parent.parent

PASSPHRASE = "benchmark passphrase"
Result = TypeVar("Result")
MB = 1e6


class QuietReporter:
    """A Reporter that never stops the work and counts the warnings."""

    def __init__(self) -> None:
        self.warnings = 0

    def progress(self, percent: int) -> None:
        pass

    def warning(self, error: object) -> None:
        self.warnings += 1

    def should_stop(self) -> bool:
        return False


def common_arguments(parser: argparse.ArgumentParser, size: str | None = "1GiB") -> None:
    if size is not None:
        parser.add_argument("--size", type=parse_size, default=parse_size(size),
                            help=f"data set size (default {size})")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data", type=Path,
                        help="data set folder: made there and kept if missing, reused if made "
                             "with the same size and seed (default: a temporary one)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()),
                        help="where temporary folders go (default: the temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep temporary data")


@contextmanager
def work_folder(args: argparse.Namespace, prefix: str) -> Iterator[Path]:
    """A fresh folder under --work, removed at the end unless --keep."""
    args.work.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"h4bench-{prefix}-", dir=args.work))
    try:
        yield folder
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            remove_tree(folder)


def remove_tree(path: Path) -> None:
    """Removes a tree, even one with read-only folders in it."""
    for folder, _dirs, _files in os.walk(path):
        os.chmod(folder, 0o700)
    shutil.rmtree(path, ignore_errors=True)


def require_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed * 1.1:
        raise SystemExit(f"{folder} has {free >> 30} GiB free; this run needs about "
                         f"{needed >> 30} GiB (fewer --rounds, or another --work)")


def dataset(args: argparse.Namespace, work: Path) -> Path:
    """The data set's tree: --data when given (made there if needed), else made inside work."""
    folder = args.data or work / "dataset"
    marker, tree = folder / ".dataset.json", folder / "data"
    wanted = {"size": args.size, "seed": args.seed, "text_ratio": 0.5, "layout": 2}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        print(f"data set: reusing {tree}")
        return tree
    if folder.exists() and any(folder.iterdir()):
        raise SystemExit(f"{folder} holds something else than this data set; name another")
    started = time.monotonic()
    files, total = make_dataset(tree, args.size, 0.5, args.seed)
    marker.write_text(json.dumps(wanted))
    print(f"data set: made {tree}: {files} files, {total / (1 << 20):.0f} MiB "
          f"in {time.monotonic() - started:.0f} s")
    return tree


def tree_bytes(tree: Path) -> tuple[int, int]:
    """Regular files under tree and their total size."""
    files = total = 0
    for folder, _dirs, names in os.walk(tree):
        for name in names:
            st = os.lstat(os.path.join(folder, name))
            files, total = files + 1, total + st.st_size
    return files, total


def require_tools(*names: str) -> None:
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        raise SystemExit(f"missing tools: {' '.join(missing)} "
                         f"(Debian: apt-get install {' '.join(missing)})")


def machine_note() -> str:
    """The CPU model, cores and memory, for the figures to be read against."""
    model = "unknown CPU"
    with open("/proc/cpuinfo") as info:
        model = next((line.split(":", 1)[1].strip() for line in info
                      if line.startswith("model name")), model)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    return f"machine: {model}, {os.cpu_count()} cores, {memory:.0f} GiB"


def load_note() -> str:
    one, five, _ = os.getloadavg()
    busy = " - the machine is busy: figures are noisy" if one > 0.5 * os.cpu_count() else ""
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores{busy}"


def alternate(contenders: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Runs each contender once per round, in turn, so that a slow moment hits them all.

    Each returns the seconds it took; the CPU seconds it used, this process's and its
    children's, are kept in CPU_SECONDS under the same name.
    """
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for number in range(1, rounds + 1):
        for name, run in contenders.items():
            before = _cpu_seconds()
            times[name].append(run())
            CPU_SECONDS.setdefault(name, []).append(_cpu_seconds() - before)
        print(f"round {number}/{rounds}: " + ", ".join(
            f"{name} {values[-1]:.2f} s" for name, values in times.items())
            + f" (load {os.getloadavg()[0]:.1f})", flush=True)
    return times


CPU_SECONDS: dict[str, list[float]] = {}


def drop_page_cache() -> None:
    """Writes back and drops the kernel's page cache, so that the next run reads the disk as
    a backup of files nobody read lately does (needs root)."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as error:
        raise SystemExit(f"cannot drop the page cache ({error}): --cold needs root") from None


def from_cold(run: Callable[[], float]) -> Callable[[], float]:
    """run, each time after the page cache was dropped (not timed)."""
    def cold() -> float:
        drop_page_cache()
        return run()

    return cold


def _cpu_seconds() -> float:
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                         resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(action: Callable[[], object]) -> float:
    return timed_result(action)[0]


def timed_result(action: Callable[[], Result]) -> tuple[float, Result]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def run_shell(script: str) -> None:
    subprocess.run(["bash", "-c", f"set -euo pipefail; {script}"], check=True)


def print_table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def rate_rows(times: dict[str, list[float]], size: int, base: str) -> list[tuple[str, ...]]:
    """One row per contender: median seconds, MB/s and CPU seconds, spread, and speed
    relative to base."""
    base_median = statistics.median(times[base])
    rows = []
    for name, values in times.items():
        median = statistics.median(values)
        cpu = statistics.median(CPU_SECONDS[name][-len(values):])
        rows.append((name, f"{median:.2f}", f"{size / MB / median:.0f}",
                     f"{size / MB / max(values):.0f}-{size / MB / min(values):.0f}",
                     f"{cpu:.1f}", f"{base_median / median:.2f}x"))
    return rows


def rate_header(base: str) -> tuple[str, ...]:
    return ("pipeline", "median s", "MB/s", "MB/s range", "CPU s", f"vs {base}")
