"""Failed logins: 429 per address and per (user, address) pair; a user's own failures only
slow that user's logins down, so an attacker can never lock the real user out."""

import pytest

from tests.conftest import ADMIN_PASSWORD

ATTACKER, OWNER = "10.9.8.7", "10.1.2.3"


@pytest.fixture
def pauses(monkeypatch):
    """The delays the API waited before answering, instead of waiting them."""
    waited: list[float] = []
    monkeypatch.setattr("api.sessions.pause", waited.append)
    return waited


def _login(client, password, user="admin", address=ATTACKER):
    return client.post("/sessions", json={"type": "localUser", "localUser": user,
                                          "localPassword": password},
                       environ_base={"REMOTE_ADDR": address})


def test_right_password_from_a_clean_address_gets_in_while_another_address_fails(
        client, pauses):
    for _ in range(12):
        _login(client, "wrong")
    assert _login(client, ADMIN_PASSWORD, address=OWNER).status_code == 200


def test_failures_of_one_user_from_one_address_are_throttled_with_retry_after(client, pauses):
    for _ in range(5):
        assert _login(client, "wrong").status_code == 401
    response = _login(client, ADMIN_PASSWORD)
    assert response.status_code == 429
    assert response.get_json()["code"] == "TooManyRequests"
    assert 0 < int(response.headers["Retry-After"]) <= 300


def test_a_users_failures_from_any_address_delay_its_logins_doubling_to_a_cap(client, pauses):
    for n in range(7):
        _login(client, "wrong", address=f"10.0.0.{n}")
    assert pauses == [0.25, 0.5, 1.0, 2.0, 3.0, 3.0]


def test_the_delay_also_comes_before_a_right_password(client, pauses):
    _login(client, "wrong")
    _login(client, "wrong", address="10.0.0.1")
    assert _login(client, ADMIN_PASSWORD, address=OWNER).status_code == 200
    assert pauses == [0.25, 0.5]


def test_another_users_failures_do_not_delay_a_login(client, pauses):
    for _ in range(3):
        _login(client, "wrong", user="someone-else")
    assert _login(client, ADMIN_PASSWORD, address=OWNER).status_code == 200
    assert pauses == [0.25, 0.5]


def test_a_successful_login_clears_the_delay(client, pauses):
    _login(client, "wrong", address=OWNER)
    assert _login(client, ADMIN_PASSWORD, address=OWNER).status_code == 200
    _login(client, ADMIN_PASSWORD, address=OWNER)
    assert pauses == [0.25]


def test_behind_a_trusted_proxy_the_forwarded_address_is_throttled(settings, store, dispatcher,
                                                                 pauses):
    import dataclasses

    from api import create_app

    app = create_app(dataclasses.replace(settings, proxy_hops=1), store=store,
                     dispatcher=dispatcher)
    client = app.test_client()
    bad = {"type": "localUser", "localUser": "admin", "localPassword": "wrong"}
    for _ in range(20):
        client.post("/sessions", json=bad, headers={"X-Forwarded-For": "203.0.113.9"},
                    environ_base={"REMOTE_ADDR": "10.0.0.1"})
    refused = client.post("/sessions", json=bad, headers={"X-Forwarded-For": "203.0.113.9"},
                          environ_base={"REMOTE_ADDR": "10.0.0.1"})
    other_client = client.post("/sessions", json=bad,
                               headers={"X-Forwarded-For": "198.51.100.7"},
                               environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert refused.status_code == 429 and other_client.status_code == 401
