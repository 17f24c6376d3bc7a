"""The client over HTTPS: the server is authenticated by a CA file or a pinned fingerprint,
a refused certificate says how to fix it, and the trust chosen at login is kept."""

from __future__ import annotations

import json
import os
import ssl
from pathlib import Path

import pytest

from cli import errors
from cli.client import DEFAULT_URL
from cli.main import main
from cli.remote import fingerprint_text, plain_http_warning
from cli.server import tls
from cli.session import Session, load_session, save_session
from tests.unit import cli_fake_service
from tests.unit.cli_fake_service import CONTENT, GOOD_HASH, TOKEN, task

TRUST_VARIABLES = ("H4_CA_CERT", "H4_FINGERPRINT", "H4_URL", "REQUESTS_CA_BUNDLE",
                   "CURL_CA_BUNDLE")


def _certificate(folder: Path, names: list[str]) -> tuple[Path, Path]:
    folder.mkdir(exist_ok=True)
    cert_pem, key_pem = tls.self_signed_certificate(names)
    cert, key = folder / "cert.pem", folder / "key.pem"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    return cert, key


def _serve(cert: Path, key: Path) -> tuple[dict, object]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    state = {"served": CONTENT, "listed": GOOD_HASH, "requests": [], "bodies": [],
             "part_b": False, "tasks": [task("SUCCEEDED", 100)]}
    return state, cli_fake_service.start(state, context)


@pytest.fixture
def environment(tmp_path, monkeypatch):
    for name in TRUST_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("H4_SESSION_FILE", str(tmp_path / "conf" / "session.json"))
    monkeypatch.setenv("H4_PASSWORD", "admin-password")


@pytest.fixture
def server(tmp_path, environment):
    """An HTTPS fake service with a self-signed certificate for localhost and 127.0.0.1."""
    cert, key = _certificate(tmp_path / "tls", ["localhost", "127.0.0.1"])
    state, running = _serve(cert, key)
    state["cert"], state["fingerprint"] = cert, tls.fingerprint(cert)
    yield state
    running.shutdown()
    running.server_close()


def _login(server: dict, *options: str) -> int:
    return main(["login", "--url", server["url"], *options])


def _sent_the_password(server: dict) -> bool:
    return any(path == "/sessions" for _, path, _ in server["requests"])


# --- the two ways to trust a self-signed server ------------------------------------------

def test_ca_cert_option_trusts_the_servers_own_certificate(server):
    assert _login(server, "--ca-cert", str(server["cert"])) == 0
    assert main(["backup", "list"]) == 0


@pytest.mark.parametrize("spelling", [str.upper, str.lower, lambda f: f.replace(":", "")])
def test_fingerprint_is_accepted_in_any_spelling(server, spelling):
    assert _login(server, "--fingerprint", spelling(server["fingerprint"])) == 0
    assert load_session().trust.fingerprint == server["fingerprint"]


def test_pinned_fingerprint_skips_the_host_name_check(tmp_path, environment):
    cert, key = _certificate(tmp_path / "tls", ["other-host.example"])
    state, running = _serve(cert, key)
    try:
        assert main(["login", "--url", state["url"], "--ca-cert", str(cert)]) == 3
        assert main(["login", "--url", state["url"],
                     "--fingerprint", tls.fingerprint(cert)]) == 0
    finally:
        running.shutdown()
        running.server_close()


def test_wrong_fingerprint_is_refused_naming_both(server, capsys):
    wrong = fingerprint_text("ab" * 32)
    assert _login(server, "--fingerprint", wrong) == errors.SERVER_NOT_TRUSTED
    err = capsys.readouterr().err
    assert "does not match the pinned fingerprint" in err
    assert wrong in err and server["fingerprint"] in err
    assert not _sent_the_password(server)


def test_untrusted_certificate_explains_the_fix_with_its_fingerprint(server, capsys):
    assert _login(server) == errors.SERVER_NOT_TRUSTED
    err = capsys.readouterr().err
    assert "certificate is not trusted (self-signed certificate)" in err
    assert f"--fingerprint {server['fingerprint']}" in err and "--ca-cert" in err
    assert len(err.splitlines()) == 1
    assert not _sent_the_password(server)


def test_default_url_is_https():
    assert DEFAULT_URL.startswith("https://")


# --- the trust kept in the session -------------------------------------------------------

def test_fingerprint_chosen_at_login_is_saved_and_reused(server):
    assert _login(server, "--fingerprint", server["fingerprint"].lower()) == 0
    saved = json.loads(Path(os.environ["H4_SESSION_FILE"]).read_text())
    assert saved == {"url": server["url"], "token": TOKEN, "user": "admin",
                     "fingerprint": server["fingerprint"]}
    assert main(["--json", "backup", "list"]) == 0


def test_ca_cert_is_saved_as_an_absolute_path(server, monkeypatch):
    monkeypatch.chdir(server["cert"].parent)
    assert _login(server, "--ca-cert", "cert.pem") == 0
    monkeypatch.chdir("/")
    assert load_session().trust.ca_cert == str(server["cert"])
    assert main(["task", "show", task("SUCCEEDED", 100)["id"]]) == 0


def test_option_on_a_later_command_replaces_the_saved_trust(server):
    save_session(Session(server["url"], TOKEN, "admin"))
    assert main(["backup", "list"]) == errors.SERVER_NOT_TRUSTED
    assert main(["backup", "list", "--fingerprint", server["fingerprint"]]) == 0


def test_session_without_trust_keeps_its_old_shape(tmp_path):
    path = tmp_path / "s.json"
    save_session(Session("https://h:1", "t", "admin"), path)
    assert set(json.loads(path.read_text())) == {"url", "token", "user"}


def test_damaged_saved_fingerprint_is_a_damaged_session(server, capsys):
    path = Path(os.environ["H4_SESSION_FILE"])
    path.parent.mkdir(mode=0o700)
    path.write_text(json.dumps({"url": server["url"], "token": TOKEN, "fingerprint": "xyz"}))
    assert main(["backup", "list"]) == errors.NOT_AUTHENTICATED
    assert "damaged" in capsys.readouterr().err


# --- defaults from the environment -------------------------------------------------------

def test_environment_variables_choose_the_trust(server, monkeypatch):
    monkeypatch.setenv("H4_FINGERPRINT", server["fingerprint"])
    assert _login(server) == 0
    monkeypatch.delenv("H4_FINGERPRINT")
    monkeypatch.setenv("H4_CA_CERT", str(server["cert"]))
    assert _login(server) == 0
    assert load_session().trust.ca_cert == str(server["cert"])


def test_requests_ca_bundle_is_honoured_without_options(server, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server["cert"]))
    assert _login(server) == 0


def test_ca_cert_option_wins_over_requests_ca_bundle(server, tmp_path, monkeypatch):
    other, _ = _certificate(tmp_path / "other", ["localhost", "127.0.0.1"])
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other))
    assert _login(server) == errors.SERVER_NOT_TRUSTED
    assert _login(server, "--ca-cert", str(server["cert"])) == 0


# --- bad trust options -------------------------------------------------------------------

@pytest.mark.parametrize("options", [
    ["--fingerprint", "AB:CD"],
    ["--ca-cert", "/nonexistent/ca.pem"],
])
def test_bad_trust_option_is_usage_error(server, options):
    assert _login(server, *options) == errors.USAGE
    assert not server["requests"]


def test_ca_cert_and_fingerprint_together_are_refused(server):
    with pytest.raises(SystemExit) as exited:
        _login(server, "--ca-cert", str(server["cert"]), "--fingerprint", server["fingerprint"])
    assert exited.value.code == errors.USAGE


def test_missing_saved_ca_file_says_so(server, capsys):
    assert _login(server, "--ca-cert", str(server["cert"])) == 0
    server["cert"].unlink()
    assert main(["backup", "list"]) == errors.SERVER_NOT_TRUSTED
    assert f"the CA file {server['cert']} is gone" in capsys.readouterr().err


def test_https_to_a_plain_http_server_points_at_the_scheme(environment, capsys):
    state = {"requests": []}
    running = cli_fake_service.start(state)
    try:
        https = state["url"].replace("http://", "https://")
        assert main(["login", "--url", https]) == errors.UNREACHABLE
    finally:
        running.shutdown()
        running.server_close()
    assert "use an http:// URL" in capsys.readouterr().err


# --- plain HTTP ----------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "warns"), [
    ("http://192.0.2.10:8046", True),
    ("http://backup.example:8046", True),
    ("http://127.0.0.1:8046", False),
    ("http://127.1.2.3:8046", False),
    ("http://localhost:8046", False),
    ("http://[::1]:8046", False),
    ("https://192.0.2.10:8046", False),
])
def test_plain_http_warns_unless_loopback(url, warns):
    assert (plain_http_warning(url) is not None) is warns


def test_plain_http_to_another_host_warns_on_every_command(environment, monkeypatch, capsys):
    monkeypatch.setattr("cli.remote.TIMEOUT", (0.2, 0.2))  # nothing answers there
    save_session(Session("http://192.0.2.10:8046", TOKEN))
    assert main(["task", "list"]) == errors.UNREACHABLE
    err = capsys.readouterr().err
    assert "is plain HTTP" in err and "unencrypted" in err
