"""Unauthenticated health is cheap and says little; metrics need the token or an admin."""

from __future__ import annotations

import dataclasses

import pytest

from api.health import HealthCache
from tests.conftest import login, queued


def _pings(store) -> int:
    return len(queued(store, "h4backup.control"))


@pytest.fixture
def fast_ping(monkeypatch):
    monkeypatch.setattr("api.health.PING_DEADLINE_SECONDS", 0.05)


def test_a_flood_of_unauthenticated_health_calls_queues_one_ping(client, store, fast_ping):
    for _ in range(50):
        assert client.get("/health").status_code == 503
    assert _pings(store) == 1


def test_unauthenticated_health_shows_no_details(client, fast_ping):
    body = client.get("/health").get_json()
    assert body == {"status": "unavailable", "redis": {"ok": True}, "workers": {"ok": False}}


def test_health_with_a_session_checks_now_and_shows_details(client, store, fast_ping):
    headers = login(client)
    client.get("/health")
    body = client.get("/health", headers=headers).get_json()
    assert _pings(store) == 2 and "latencyMs" in body["redis"] and "busy" in body["workers"]


def test_the_cache_is_used_while_fresh_and_checked_again_after():
    now = [0.0]
    cache, checks = HealthCache(max_age=2, clock=lambda: now[0]), []

    def check():
        checks.append(now[0])
        return {"status": "ok"}

    cache.get(check)
    now[0] = 1.9
    cache.get(check)
    now[0] = 2.1
    cache.get(check)
    assert checks == [0.0, 2.1]


def test_metrics_without_credentials_is_a_401_api_error(client):
    response = client.get("/metrics")
    assert response.status_code == 401 and response.get_json()["code"] == "NotAuthenticated"


def test_metrics_with_the_bearer_token(app, client):
    services = app.extensions["h4"]
    services.settings = dataclasses.replace(services.settings, metrics_token="scrape-T0ken")
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-T0ken"}
                      ).status_code == 200
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_metrics_for_an_administrators_session(client):
    assert client.get("/metrics", headers=login(client)).status_code == 200
