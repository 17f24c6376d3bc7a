"""Generated source trees, and a byte-for-byte comparison of a restored tree with its source."""

from __future__ import annotations

import os
import random
from pathlib import Path

WORDS = "backup restore archive tenant replica vault policy appliance site cloud".split()


def make_tree(root: Path, files: int = 300, seed: int = 7) -> Path:
    """Text and binary files in nested folders, an empty file, a unicode name and a symlink."""
    rng = random.Random(seed)
    for index in range(files):
        folder = root / f"level{index % 5}" / f"sub{index % 7}" / f"deep{index % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        if index % 2:
            (folder / f"file{index}.bin").write_bytes(rng.randbytes(rng.randint(1, 200_000)))
        else:
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 20_000)))
            (folder / f"notes{index}.txt").write_text(text)
    (root / "empty.dat").write_bytes(b"")
    (root / "level0" / "résumé – 日本語 ✓.txt").write_text("unicode name\n")
    (root / "empty-folder").mkdir()
    os.symlink("level0/résumé – 日本語 ✓.txt", root / "link-to-resume")
    return root


def assert_same_tree(source: Path, restored: Path) -> int:
    """Every entry of `source` is in `restored` with the same bytes or link target."""
    compared = 0
    for path in sorted(source.rglob("*")):
        twin = restored / path.relative_to(source)
        if path.is_symlink():
            assert twin.is_symlink() and os.readlink(twin) == os.readlink(path), path
        elif path.is_dir():
            assert twin.is_dir() and not twin.is_symlink(), path
        else:
            assert twin.read_bytes() == path.read_bytes(), path
        compared += 1
    extra = {p.relative_to(restored) for p in restored.rglob("*")} - {
        p.relative_to(source) for p in source.rglob("*")}
    assert not extra, f"restored tree has entries the source lacks: {sorted(extra)[:5]}"
    return compared
