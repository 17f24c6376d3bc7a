"""Fixtures of the worker's unit tests: fast settings, the backup storage and a WorkerContext
built from the same pieces a worker process builds (fakeredis in place of Redis)."""

from __future__ import annotations

import pytest

from common.bootstrap import backup_storage
from common.config import load_settings
from common.starting import TaskStarter
from common.transit import StaticKeys, TransitSealer
from tests.conftest import ADMIN_PASSWORD
from worker.context import WorkerContext

TRANSIT_KEY = b"k" * 32


def make_settings(tmp_path, **extra: str):
    """The shared unit-test settings, with the cheapest scrypt a backup password allows."""
    return load_settings({
        "H4_DATA_DIR": str(tmp_path / "data"),
        "H4_ADMIN_USER": "admin",
        "H4_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "H4_SOURCES": f"data={tmp_path / 'source'}",
        "H4_BACKUP_QUOTA": "3",
        "H4_SCRYPT_WORK_FACTOR": "10",
        **extra,
    })


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path)


@pytest.fixture
def sealer():
    return TransitSealer(StaticKeys((TRANSIT_KEY,)))


@pytest.fixture
def storage(settings):
    """Where the service keeps backup files, as the worker and the API get it."""
    return backup_storage(settings)


@pytest.fixture
def ctx(settings, store, sealer, storage):
    return WorkerContext(settings=settings, store=store, sealer=sealer, storage=storage,
                         holder="host:1")


@pytest.fixture
def starter(store, settings, dispatcher, sealer):
    """Starts tasks as the API and beat do: row, sealed secret and message in one step."""
    return TaskStarter(store, settings, dispatcher.message, sealer)
