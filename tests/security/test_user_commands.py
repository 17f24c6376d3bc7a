"""`h4backup user ...` and `session revoke` as an administrator runs them on the server: any
change to a user ends its sessions at once, and mistakes get a message, never a traceback."""

from __future__ import annotations

import pytest
import requests

from tests.integration.harness import RedisServer, Service, stop_in_background

pytestmark = pytest.mark.integration

FIRST, SECOND = "Op-first-pass-1", "Op-second-pass-2"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("users")
    redis_server = RedisServer(root / "redis").start()
    running = Service(root / "service", redis_server, {"etc": root}).start(workers=0)
    yield running
    stop_in_background(running, redis_server)


def _ok(run) -> str:
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    return run.stdout + run.stderr


def _add(service: Service, name: str, *flags: str, password: str = FIRST) -> None:
    _ok(service.command("user", "add", name, *flags, H4_NEW_USER_PASSWORD=password))


def _alive(service: Service, http: requests.Session) -> bool:
    return http.get(f"{service.url}/sessions").status_code == 200


def test_a_new_password_ends_the_users_sessions(service):
    _add(service, "pw-user")
    http = service.login("pw-user", FIRST)
    _ok(service.command("user", "passwd", "pw-user", H4_NEW_USER_PASSWORD=SECOND))
    assert not _alive(service, http)
    assert _alive(service, service.login("pw-user", SECOND))


def test_losing_the_admin_role_ends_the_users_sessions(service):
    _add(service, "demoted", "--admin")
    http = service.login("demoted", FIRST)
    _add(service, "demoted")
    assert not _alive(service, http)


def test_deleting_a_user_ends_its_sessions_and_its_logins(service):
    _add(service, "leaver")
    http = service.login("leaver", FIRST)
    _ok(service.command("user", "delete", "leaver"))
    assert not _alive(service, http)
    response = requests.post(f"{service.url}/sessions", json={
        "type": "localUser", "localUser": "leaver", "localPassword": FIRST})
    assert response.status_code == 401


def test_revoking_ends_the_sessions_and_keeps_the_password(service):
    _add(service, "revoked")
    http = service.login("revoked", FIRST)
    _ok(service.command("session", "revoke", "--user", "revoked"))
    assert not _alive(service, http)
    assert _alive(service, service.login("revoked", FIRST))


def test_users_are_listed_with_their_roles(service):
    _add(service, "listed", "--admin")
    lines = _ok(service.command("user", "list")).splitlines()
    assert any(line.split() == ["listed", "ADMINISTRATORS"] for line in lines), lines
    assert any(line.split() == ["admin", "ADMINISTRATORS"] for line in lines), lines


@pytest.mark.parametrize("args", [("user", "delete", "ghost"), ("user", "passwd", "ghost"),
                                  ("session", "revoke", "--user", "ghost")])
def test_an_unknown_user_gets_a_clear_message(service, args):
    run = service.command(*args, H4_NEW_USER_PASSWORD=SECOND)
    assert run.returncode == 4
    assert run.stderr.strip() == "h4backup: no user ghost" and run.stdout == ""


def test_user_add_finds_the_redis_serve_started(service, tmp_path):
    url_file = tmp_path / "data" / "redis" / "url"
    url_file.parent.mkdir(parents=True)
    url_file.write_text(service.redis.url + "\n")
    url_file.chmod(0o600)
    _ok(service.command("user", "add", "via-serve", H4_REDIS_URL="",
                        H4_DATA_DIR=str(tmp_path / "data"), H4_NEW_USER_PASSWORD=FIRST))
    assert _alive(service, service.login("via-serve", FIRST))


def test_without_any_redis_the_command_says_how_to_get_one(service, tmp_path):
    run = service.command("user", "list", H4_REDIS_URL="", H4_DATA_DIR=str(tmp_path))
    assert run.returncode == 5
    assert run.stderr.strip() == ("h4backup: no Redis found: start `h4backup serve` or set "
                                  "H4_REDIS_URL")
