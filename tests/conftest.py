"""Fixtures shared by unit tests: settings in a temporary folder, a fakeredis store, the app."""

from __future__ import annotations

import fakeredis
import pytest

from common.config import load_settings
from common.store import Store

ADMIN_PASSWORD = "admin-secret-Pa$$"


class RecordingDispatcher:
    """Stands in for Celery in unit tests: records what would have been sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.fail_with: Exception | None = None

    def send(self, task_name: str, task_id: str) -> None:
        if self.fail_with:
            raise self.fail_with
        self.sent.append((task_name, task_id))

    def ping(self, nonce: str, expires: float) -> None:
        self.pinged = nonce


@pytest.fixture
def settings(tmp_path):
    return load_settings({
        "H4_DATA_DIR": str(tmp_path / "data"),
        "H4_ADMIN_USER": "admin",
        "H4_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "H4_SOURCES": f"data={tmp_path / 'source'}",
        "H4_BACKUP_QUOTA": "3",
    })


@pytest.fixture
def store():
    return Store(fakeredis.FakeRedis(decode_responses=True), task_ttl_seconds=60)


@pytest.fixture
def dispatcher():
    return RecordingDispatcher()


@pytest.fixture
def app(settings, store, dispatcher):
    from api import create_app

    return create_app(settings, store=store, dispatcher=dispatcher)


@pytest.fixture
def client(app):
    return app.test_client()


def login(client, user: str = "admin", password: str = ADMIN_PASSWORD) -> dict[str, str]:
    response = client.post("/sessions", json={"type": "localUser", "localUser": user,
                                              "localPassword": password})
    assert response.status_code == 200, response.get_data(as_text=True)
    return {"X-VCAV-Auth": response.headers["X-VCAV-Auth"]}
