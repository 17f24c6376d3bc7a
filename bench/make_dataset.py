"""Makes a deterministic tree of test files for benchmarks.

    python bench/make_dataset.py OUT_DIR --size 1GiB --text-ratio 0.5 --seed 1

File sizes run from 1 KiB to 64 MiB: half of the bytes are in small files (1 KiB to 1 MiB) and
half in large ones (1 MiB to 64 MiB), each spread log-uniformly, so that 1 GiB makes about 3,500
files, most of them small, as in a real configuration or home folder, and per-file costs show.
About text-ratio of the bytes are log-like text (compressible, built from a generated
vocabulary, never one repeated block); the rest are random (incompressible). The same seed
always gives the same tree.
"""

from __future__ import annotations

import argparse
import math
import random
import re
import sys
from pathlib import Path

MIN_FILE = 1 << 10
LARGE_FILE = 1 << 20
MAX_FILE = 64 << 20
SMALL_SHARE = 0.5  # of the bytes, in files under LARGE_FILE
_CHUNK = 1 << 20
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1 << 10, "m": 1000**2, "mb": 1000**2,
          "mib": 1 << 20, "g": 1000**3, "gb": 1000**3, "gib": 1 << 30}
_LEVELS = ("info", "info", "info", "debug", "warn", "error")


def parse_size(text: str) -> int:
    """Bytes in '2GiB', '500MB', '64k' or '1024'."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


class TextMaker:
    """Log lines drawn from a generated vocabulary: compressible, yet not a repeated block."""

    def __init__(self, rng: random.Random, pool_size: int = 50_000) -> None:
        letters = "abcdefghijklmnopqrstuvwxyz"
        words = ["".join(rng.choices(letters, k=rng.randint(2, 10))) for _ in range(3000)]
        self._rng = rng
        self._lines = [self._line(rng, words, n) for n in range(pool_size)]

    @staticmethod
    def _line(rng: random.Random, words: list[str], n: int) -> str:
        message = " ".join(rng.choices(words, k=rng.randint(3, 14)))
        return (f"2024-05-{n % 28 + 1:02d}T{n % 24:02d}:{n % 60:02d}:{rng.randrange(60):02d}"
                f" level={rng.choice(_LEVELS)} svc={words[n % 40]} id={rng.randrange(10**6)}"
                f" msg=\"{message}\"\n")

    def chunk(self, size: int) -> bytes:
        # About 90 bytes a line on average; draw a few more than needed, then cut.
        lines = self._rng.choices(self._lines, k=size // 60 + 1)
        return "".join(lines).encode()[:size]


def file_sizes(rng: random.Random, total: int) -> list[int]:
    """Sizes adding up to total, in random order; the smallest and largest sizes appear when
    there is room for them."""
    small_budget = int(total * SMALL_SHARE)
    large_budget = total - small_budget
    ends = [size for size, budget in ((MAX_FILE, large_budget), (MIN_FILE, small_budget))
            if size <= budget]
    small = _draw(rng, MIN_FILE, LARGE_FILE, small_budget - (MIN_FILE in ends) * MIN_FILE)
    large = _draw(rng, LARGE_FILE, MAX_FILE, large_budget - (MAX_FILE in ends) * MAX_FILE)
    sizes = small + large
    rng.shuffle(sizes)
    return ends + sizes


def _draw(rng: random.Random, low: int, high: int, budget: int) -> list[int]:
    """Log-uniform sizes in [low, high] until budget bytes; the last one takes what is left."""
    low_log, high_log = math.log(low), math.log(high)
    sizes: list[int] = []
    while budget > 0:
        size = min(int(math.exp(rng.uniform(low_log, high_log))), budget)
        sizes.append(size)
        budget -= size
    return sizes


def relative_path(rng: random.Random, index: int, is_text: bool) -> Path:
    folders = [f"dir{rng.randrange(6)}" for _ in range(rng.randrange(4))]
    return Path(*folders, f"file{index:05d}.{'log' if is_text else 'bin'}")


def write_file(path: Path, size: int, is_text: bool, rng: random.Random, text: TextMaker) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        for offset in range(0, size, _CHUNK):
            length = min(_CHUNK, size - offset)
            out.write(text.chunk(length) if is_text else rng.randbytes(length))


def make_dataset(out_dir: Path, size: int, text_ratio: float, seed: int) -> tuple[int, int]:
    """Writes the tree; returns (file count, total bytes)."""
    rng = random.Random(seed)
    text = TextMaker(rng)
    text_bytes = written = 0
    sizes = file_sizes(rng, size)
    for index, file_size in enumerate(sizes):
        # Choosing by bytes so far keeps the ratio close even with a few huge files.
        is_text = text_bytes < text_ratio * (written + file_size / 2)
        write_file(out_dir / relative_path(rng, index, is_text), file_size, is_text, rng, text)
        written += file_size
        text_bytes += file_size if is_text else 0
    return len(sizes), written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--size", type=parse_size, default=parse_size("1GiB"))
    parser.add_argument("--text-ratio", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.out_dir.exists() and any(args.out_dir.iterdir()):
        parser.error(f"{args.out_dir} is not empty")
    files, total = make_dataset(args.out_dir, args.size, args.text_ratio, args.seed)
    print(f"files: {files}")
    print(f"bytes: {total} ({total / (1 << 20):.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
