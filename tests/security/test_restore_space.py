"""Restores that would fill their filesystem stop first, with RestoreTooLarge, and leave
neither a partial restore nor a full disk behind."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security import crafted
from tests.security.worker_watch import (
    RSS_LIMIT_KIB,
    FillWatch,
    failed_with,
    imported,
    restore_measured,
    running_service,
)

pytestmark = [pytest.mark.integration, pytest.mark.security]

MiB = 1 << 20


@pytest.fixture(scope="module")
def small_filesystem(tmp_path_factory) -> Iterator[Path]:
    """A 64 MiB tmpfs with 3,000 inodes (root may mount; elsewhere the tests cannot run)."""
    mount_point = tmp_path_factory.mktemp("small-fs")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,nr_inodes=3000",
                              "tmpfs", str(mount_point)], capture_output=True, text=True)
    if mounted.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a small filesystem: {mounted.stderr}")
        pytest.skip(f"cannot mount a small filesystem: {mounted.stderr}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture(scope="module")
def service(tmp_path_factory, small_filesystem):
    root = tmp_path_factory.mktemp("space")
    with running_service(root, H4_RESTORE_DIR=str(small_filesystem / "restores")) as running:
        yield running


def _restore_stops_before_full(service, small_filesystem, data: bytes):
    http = service.login()
    backup_id = imported(service, http, data)
    with FillWatch(small_filesystem) as watch:
        outcome = restore_measured(service, http, backup_id)
    assert failed_with(outcome.task) == "RestoreTooLarge", outcome.task
    assert outcome.peak_rss_kib < RSS_LIMIT_KIB, outcome.peak_rss_kib
    assert list((small_filesystem / "restores").iterdir()) == []
    return watch.lowest


def test_zstd_bomb_of_160_mib_is_refused_before_the_64_mib_filesystem_fills(
        service, small_filesystem):
    data = crafted.zeros_bomb(40, 4 * MiB)
    assert len(data) < 64 * 1024
    lowest = _restore_stops_before_full(service, small_filesystem, data)
    assert lowest.free_bytes >= 2 * MiB, lowest


def test_member_count_bomb_is_refused_before_the_inodes_run_out(service, small_filesystem):
    data = crafted.member_count_bomb(20_000)
    assert len(data) < 256 * 1024
    lowest = _restore_stops_before_full(service, small_filesystem, data)
    assert lowest.free_inodes >= 100, lowest
