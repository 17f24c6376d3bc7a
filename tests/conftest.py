"""Fixtures shared by unit tests: settings in a temporary folder, a fakeredis store, the app."""

from __future__ import annotations

import base64
import json

import fakeredis
import pytest

from api.dispatch import CeleryDispatcher
from common.celery_app import QUEUE, make_celery
from common.config import load_settings
from common.store import Store
from tests.integration.conftest_objectstore import object_store  # noqa: F401 - one store a session
from tests.integration.harness import join_background_stops

ADMIN_PASSWORD = "admin-secret-Pa$$"


def queued(store: Store, queue: str = QUEUE) -> list[tuple[str, list]]:
    """(task name, args) of the Celery messages waiting in a queue, oldest first."""
    return [decode_message(payload) for payload in reversed(store.redis.lrange(queue, 0, -1))]


def decode_message(payload: str) -> tuple[str, list]:
    envelope = json.loads(payload)
    args, _kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
    return envelope["headers"]["task"], args


@pytest.fixture(autouse=True, scope="session")
def background_stops_joined():
    """Every service a teardown left stopping in the background is stopped by the session's
    end (tests.integration.harness.stop_in_background)."""
    yield
    join_background_stops()


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
def dispatcher(settings):
    """The API's own: it only builds messages, which the store queues in fakeredis."""
    return CeleryDispatcher(make_celery(settings))


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
