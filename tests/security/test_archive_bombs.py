"""Tiny imported files that declare huge headers: each restore fails with ArchiveLimitExceeded
before the declared bytes are read, and the worker's memory stays under RSS_LIMIT_KIB."""

from __future__ import annotations

import tarfile

import pytest

from tests.security import crafted
from tests.security.worker_watch import (
    RSS_LIMIT_KIB,
    failed_with,
    import_file,
    imported,
    restore_measured,
    running_service,
)

pytestmark = [pytest.mark.integration, pytest.mark.security]

MiB = 1 << 20


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("bombs")
    # A quota of one: a refused import that kept its slot would block the next import.
    with running_service(root, H4_BACKUP_QUOTA="1",
                         H4_RESTORE_DIR=str(root / "restores")) as running:
        yield running


@pytest.fixture
def http(service):
    session = service.login()
    yield session
    for backup in session.get(f"{service.url}/backups").json():
        session.delete(f"{service.url}/backups/{backup['id']}")


def _restore_fails_lean(service, http, data: bytes) -> None:
    assert len(data) < 64 * 1024
    outcome = restore_measured(service, http, imported(service, http, data))
    assert failed_with(outcome.task) == "ArchiveLimitExceeded", outcome.task
    assert outcome.peak_rss_kib < RSS_LIMIT_KIB, outcome.peak_rss_kib
    restores = service.root.parent / "restores"
    assert not restores.exists() or list(restores.iterdir()) == []


def test_a_manifest_of_one_600_mib_line_fails_before_it_is_read(service, http):
    _restore_fails_lean(service, http, crafted.manifest_bomb(600 * MiB))


def test_a_pax_header_of_512_mib_fails_before_it_is_read(service, http):
    _restore_fails_lean(service, http, crafted.pax_bomb(512 * MiB))


@pytest.mark.parametrize("kind", [tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK],
                         ids=["long-name", "long-link"])
def test_a_gnu_long_name_or_link_of_512_mib_fails_before_it_is_read(service, http, kind):
    _restore_fails_lean(service, http, crafted.gnu_long_bomb(kind, 512 * MiB))


def test_four_bytes_of_zstd_magic_are_refused_and_free_their_quota_slot(service, http):
    refused = import_file(service, http, b"\x28\xb5\x2f\xfd")
    assert refused.status_code == 400, refused.text
    body = refused.json()
    assert body["code"] == "BadUserInput" and "not a backup file" in body["msg"], body
    assert http.get(f"{service.url}/backups").json() == []
    assert list(service.backup_dir.iterdir()) == []
    # The quota is one backup: this import succeeds only if the refused one let go of it.
    backup = crafted.CraftedBackup()
    backup.manifest()
    assert import_file(service, http, backup.finish()).status_code == 202
