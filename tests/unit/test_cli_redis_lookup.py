"""Which Redis the server-side commands (user, session) use, and what they say without one."""

import pytest
import redis

from cli.errors import UNREACHABLE, ClientError
from cli.main import main
from cli.server.users import NO_REDIS, redis_url_file, server_redis_url, without_password
from common.config import load_settings
from tests.integration.harness import free_port

SERVE_URL = "redis://:serve-secret@127.0.0.1:6390/0"


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    """A data folder of its own and no H4_REDIS_URL."""
    monkeypatch.delenv("H4_REDIS_URL", raising=False)
    monkeypatch.setenv("H4_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("H4_NEW_USER_PASSWORD", "new-user-pass")
    return tmp_path / "data"


@pytest.fixture
def no_connection(monkeypatch):
    """Fails the test instead of reaching any Redis, above all the machine's own."""
    def refuse(url, **_kwargs):
        raise AssertionError(f"connected to {url}")

    monkeypatch.setattr(redis.Redis, "from_url", refuse)


def _write_serve_file(data_dir, url=SERVE_URL):
    path = redis_url_file(load_settings({"H4_DATA_DIR": str(data_dir)}))
    path.parent.mkdir(parents=True)
    path.write_text(url + "\n")
    path.chmod(0o600)


def test_the_redis_url_setting_comes_first(tmp_path):
    _write_serve_file(tmp_path)
    settings = load_settings({"H4_DATA_DIR": str(tmp_path),
                              "H4_REDIS_URL": "redis://127.0.0.1:7000/1"})
    assert server_redis_url(settings) == "redis://127.0.0.1:7000/1"


def test_without_the_setting_the_url_serve_wrote_is_used(tmp_path):
    _write_serve_file(tmp_path)
    assert server_redis_url(load_settings({"H4_DATA_DIR": str(tmp_path)})) == SERVE_URL


def test_without_either_it_says_how_to_get_a_redis(tmp_path):
    with pytest.raises(ClientError) as raised:
        server_redis_url(load_settings({"H4_DATA_DIR": str(tmp_path)}))
    assert str(raised.value) == NO_REDIS and raised.value.exit_code == UNREACHABLE
    assert NO_REDIS == "no Redis found: start `h4backup serve` or set H4_REDIS_URL"


def test_user_add_without_any_redis_connects_nowhere_and_says_so(cli_env, no_connection,
                                                                capsys):
    assert main(["user", "add", "operator"]) == UNREACHABLE
    assert capsys.readouterr().err.strip() == f"h4backup: {NO_REDIS}"


def test_an_unreachable_redis_is_named_without_its_password(cli_env, monkeypatch, capsys):
    port = free_port()  # nothing listens there
    monkeypatch.setenv("H4_REDIS_URL", f"redis://:p4ss-word@127.0.0.1:{port}/0")
    assert main(["user", "add", "operator"]) == UNREACHABLE
    err = capsys.readouterr().err
    assert f"cannot reach Redis at redis://:***@127.0.0.1:{port}/0" in err
    assert "p4ss-word" not in err and "Traceback" not in err


def test_a_url_left_by_a_stopped_serve_is_named_as_such(cli_env, capsys):
    port = free_port()
    _write_serve_file(cli_env, f"redis://:serve-secret@127.0.0.1:{port}/0")
    assert main(["user", "list"]) == UNREACHABLE
    err = capsys.readouterr().err
    assert f"redis://:***@127.0.0.1:{port}/0" in err and "serve-secret" not in err
    assert "is `h4backup serve` running?" in err


def test_a_password_in_the_query_is_hidden_too():
    assert without_password("unix:///run/redis.sock?db=0&password=s3cret") == (
        "unix:///run/redis.sock?db=0&password=***")
