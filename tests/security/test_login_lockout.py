"""Failed logins cannot lock the real user out: over HTTPS, from distinct client addresses.

The guesses come from 127.0.0.2 and the user's own login from 127.0.0.3 (the whole 127/8
range is loopback on Linux), so the API sees them as two clients, as it would behind
nothing but the network.
"""

from __future__ import annotations

import http.client
import json
import ssl

import pytest

from tests.integration.harness import VENDOR_JSON, RedisServer, Service, stop_in_background

pytestmark = pytest.mark.integration

GUESSER, OWNER, SCANNER = "127.0.0.2", "127.0.0.3", "127.0.0.4"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("lockout")
    redis_server = RedisServer(root / "redis").start()
    running = Service(root / "service", redis_server, {"etc": root}, extra_env={
        "H4_LOGIN_DELAY_MS": "20", "H4_LOGIN_DELAY_MAX_MS": "100"}).start(workers=0)
    yield running
    stop_in_background(running, redis_server)


def login_from(service: Service, address: str, password: str,
               user: str = "admin") -> http.client.HTTPResponse:
    context = ssl.create_default_context(cafile=str(service.ca_file))
    connection = http.client.HTTPSConnection("127.0.0.1", service.port, timeout=30,
                                             source_address=(address, 0), context=context)
    body = json.dumps({"type": "localUser", "localUser": user, "localPassword": password})
    connection.request("POST", "/sessions", body=body, headers={
        "Accept": f"{VENDOR_JSON};charset=UTF-8", "Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_the_owner_gets_in_from_another_address_while_one_address_guesses(service):
    statuses = [login_from(service, GUESSER, "guess").status for _ in range(8)]
    assert statuses == [401] * 5 + [429] * 3
    assert login_from(service, OWNER, service.admin_password).status == 200


def test_the_guessing_address_is_told_when_to_try_again(service):
    for _ in range(5):
        login_from(service, GUESSER, "guess", user="operator")
    refused = login_from(service, GUESSER, "guess", user="operator")
    assert refused.status == 429 and 0 < int(refused.getheader("Retry-After")) <= 300


def test_an_address_guessing_many_users_is_throttled(service):
    for n in range(20):
        login_from(service, SCANNER, "guess", user=f"user{n}")
    assert login_from(service, SCANNER, service.admin_password).status == 429
