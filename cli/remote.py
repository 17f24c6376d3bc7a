"""The REST API as the client sees it: vCDA 4.5 media type, token header, errors as exit
codes, and the server authenticated by its certificate before the token is sent."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import ssl
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from cli.errors import (
    NOT_AUTHENTICATED,
    SERVER_NOT_TRUSTED,
    UNREACHABLE,
    ClientError,
    describe_api_error,
    exit_code_for_status,
)

ACCEPT = "application/vnd.vmware.h4-v4.5+json;charset=UTF-8"
TOKEN_HEADER = "X-VCAV-Auth"
# (connect, read): a server that accepts the connection but never answers still ends the run.
TIMEOUT = (10.0, 120.0)


class ApiRequestError(ClientError):
    """An ApiError answer: keeps the status and the code so callers can tell cases apart."""

    def __init__(self, status: int, error: dict[str, Any], hint: str = "") -> None:
        super().__init__(describe_api_error(error) + hint, exit_code_for_status(status))
        self.status, self.code = status, str(error.get("code", ""))


@dataclass(frozen=True)
class Trust:
    """How the server's certificate is checked: against a CA file, by its pinned SHA-256,
    or (neither) against the system's CAs, or REQUESTS_CA_BUNDLE when that is set."""

    ca_cert: str | None = None
    fingerprint: str | None = None

    @property
    def verify(self) -> str | bool | None:
        """requests' `verify`, given with each request: a session-wide one would lose to
        REQUESTS_CA_BUNDLE, and None lets requests read that variable."""
        if self.fingerprint:
            return False  # the chain is not checked: PinnedAdapter checks the certificate
        return self.ca_cert


class PinnedAdapter(HTTPAdapter):
    """Accepts exactly one server certificate, known by its SHA-256, whoever signed it.

    urllib3 compares the digest during the handshake, before a byte of the request leaves.
    """

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint  # before super().__init__, which builds the pools
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, assert_fingerprint=self.fingerprint, **kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        # Through a proxy as well: without this, verify=False would check nothing there.
        return super().proxy_manager_for(proxy, assert_fingerprint=self.fingerprint,
                                         **proxy_kwargs)


class Api:
    def __init__(self, url: str, token: str | None = None, trust: Trust | None = None) -> None:
        self.url, self.trust = url.rstrip("/"), trust or Trust()
        self.http = _http_session(self.trust)
        self.http.headers["Accept"] = ACCEPT
        if token:
            self.http.headers[TOKEN_HEADER] = token

    def call(self, method: str, path: str, expect: tuple[int, ...] = (200,),
             **kwargs: Any) -> requests.Response:
        """One request; any answer outside `expect` raises with the server's `code: msg`."""
        try:
            response = self.http.request(method, self.url + path, timeout=TIMEOUT,
                                         verify=self.trust.verify, **kwargs)
        except requests.exceptions.SSLError as exc:
            raise tls_failure(self.url, self.trust, exc) from None
        except requests.ConnectionError as exc:
            raise ClientError(f"cannot reach {self.url}: {_reason(exc)}", UNREACHABLE) from None
        except requests.Timeout:
            raise ClientError(f"{self.url} did not answer in time", UNREACHABLE) from None
        if response.status_code not in expect:
            raise ApiRequestError(response.status_code, _api_error(response),
                                  self._hint(response.status_code))
        return response

    def _hint(self, status: int) -> str:
        if status == 401 and TOKEN_HEADER in self.http.headers:
            return " (the session has ended: run `h4backup login`)"
        return ""

    def json(self, method: str, path: str, expect: tuple[int, ...] = (200,),
             **kwargs: Any) -> Any:
        return self.call(method, path, expect, **kwargs).json()

    def login(self, user: str, password: str) -> tuple[dict[str, Any], str]:
        """Session details and the token; bad credentials are exit code 3."""
        body = {"type": "localUser", "localUser": user, "localPassword": password}
        response = self.call("POST", "/sessions", json=body)
        token = response.headers.get(TOKEN_HEADER)
        if not token:
            raise ClientError("the server sent no session token", NOT_AUTHENTICATED)
        return response.json(), token

    def task(self, task_id: str) -> dict[str, Any]:
        return self.json("GET", f"/tasks/{task_id}")

    def backups(self, labels: list[str] | tuple[str, ...] = ()) -> list[dict[str, Any]]:
        return self.json("GET", "/backups", params={"label": list(labels)} if labels else None)

    def retention_preview(self) -> dict[str, Any]:
        return self.json("GET", "/backups/config/retention-preview")


def _api_error(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "code" in body:
        return body
    return {"code": f"HTTP{response.status_code}", "msg": response.reason or ""}


def _reason(exc: requests.ConnectionError) -> str:
    """The innermost cause, e.g. `Connection refused`, without urllib3's long wrapper text."""
    text = str(exc.args[0] if exc.args else exc)
    return text.rsplit("] ", 1)[-1].rstrip("')\"") if "] " in text else text


def _http_session(trust: Trust) -> requests.Session:
    http = requests.Session()
    if trust.fingerprint:
        http.mount("https://", PinnedAdapter(trust.fingerprint))
    elif trust.ca_cert and not os.path.isfile(trust.ca_cert):
        raise ClientError(f"the CA file {trust.ca_cert} is gone: give it again with --ca-cert, "
                          "or log in again", SERVER_NOT_TRUSTED)
    return http


# --- choosing the trust ------------------------------------------------------------------

def fingerprint_text(text: str) -> str:
    """A SHA-256 fingerprint as `AB:CD:..`, from that, lowercase, or bare hex digits."""
    digits = text.rsplit("=", 1)[-1].replace(":", "").strip()  # also openssl's `...=AB:CD`
    if len(digits) != 64 or not set(digits) <= set(string.hexdigits):
        raise ValueError(f"not a SHA-256 fingerprint (64 hex digits, colons optional): {text!r}")
    return colon_hex(bytes.fromhex(digits))


def colon_hex(digest: bytes) -> str:
    """`AB:CD:...`, as openssl prints a fingerprint."""
    return digest.hex(":").upper()


def ca_cert_file(text: str) -> str:
    """The absolute path (later commands may run elsewhere) of a file of PEM certificates."""
    path = Path(text).expanduser().resolve()
    try:
        ssl.create_default_context(cafile=str(path))
    except OSError as exc:  # ssl.SSLError included: no certificate in the file
        raise ValueError(f"cannot use {text} as a CA file: {exc.strerror or exc}") from None
    return str(path)


def plain_http_warning(url: str) -> str | None:
    """A warning for a plain-HTTP URL that leaves this machine, None otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "http" or _is_loopback(parts.hostname or ""):
        return None
    return (f"warning: {url} is plain HTTP: the session token (and at login the password) "
            "crosses the network unencrypted")


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- explaining a refused certificate ----------------------------------------------------

def tls_failure(url: str, trust: Trust, exc: requests.exceptions.SSLError) -> ClientError:
    """What went wrong in the handshake, and how to fix it."""
    if trust.fingerprint:
        shown = peer_fingerprint(url)
        if shown and shown != trust.fingerprint:
            return ClientError(_mismatch(url, trust.fingerprint, shown), SERVER_NOT_TRUSTED)
    refused = _verification_error(exc)
    if refused is not None:
        reason = (refused.verify_message or "").rstrip(".") or "not trusted"
        return ClientError(_untrusted(reason, peer_fingerprint(url)), SERVER_NOT_TRUSTED)
    return ClientError(f"TLS with {url} failed: {_reason(exc)} (if the server runs with "
                       "H4_TLS=off, use an http:// URL)", UNREACHABLE)


def _untrusted(reason: str, shown: str | None) -> str:
    head = f"the server's certificate is not trusted ({reason})."
    fix = "give its certificate with --ca-cert <data dir>/tls/cert.pem"
    if shown is None:
        return (f"{head} Log in with --fingerprint and the SHA-256 fingerprint `h4backup serve` "
                f"printed, or {fix}")
    return (f"{head} Its SHA-256 fingerprint is {shown}. If that is the fingerprint "
            f"`h4backup serve` printed, log in with --fingerprint {shown}, or {fix}")


def _mismatch(url: str, pinned: str, shown: str) -> str:
    return (f"the server's certificate does not match the pinned fingerprint: expected "
            f"{pinned}, but {url} shows {shown}. If the server's certificate was replaced "
            "(`h4backup serve` prints the new fingerprint), log in again with --fingerprint")


def peer_fingerprint(url: str) -> str | None:
    """SHA-256 of the certificate the server shows, fetched unverified: only ever displayed,
    never trusted."""
    parts = urlsplit(url)
    try:
        pem = ssl.get_server_certificate((parts.hostname or "", parts.port or 443),
                                         timeout=TIMEOUT[0])
        return colon_hex(hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).digest())
    except (OSError, ValueError):
        return None


def _verification_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate check that failed, from deep inside requests' and urllib3's wrappers."""
    pending, seen = [exc], set()
    while pending:
        current = pending.pop()
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        if id(current) not in seen:
            seen.add(id(current))
            linked = (*current.args, getattr(current, "reason", None), current.__cause__)
            pending += [link for link in linked if isinstance(link, BaseException)]
    return None
