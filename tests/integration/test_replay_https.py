"""The calls real vCDA clients make, replayed over HTTPS as they make them.

Twice: against the API with the certificate it generated at first start (trusted as a client
would, from the file the service wrote and the fingerprint it printed), and behind a
TLS-terminating proxy that speaks plain HTTP to the API (H4_TLS=off, H4_PROXY_HOPS=1), where
links must still say https.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.integration.contract_clients import (
    VENDOR_VERSIONS,
    assert_about_info,
    assert_api_task,
    assert_cloud_health_info,
)
from tests.integration.harness import RedisServer, Service, run_certificate, stop_in_background
from tests.integration.tls_proxy import TlsProxy

CREDENTIALS = {"type": "localUser", "localUser": "admin"}


class Deployment:
    """Where a client reaches the API, and which certificate it trusts there."""

    def __init__(self, service: Service, url: str, ca_file) -> None:
        self.service, self.url, self.ca_file = service, url, ca_file

    def session(self, accept: str | None = None) -> requests.Session:
        http = requests.Session()
        http.trust_env, http.verify = False, str(self.ca_file)
        if accept:
            http.headers["Accept"] = accept
        return http

    def login(self, accept: str | None = None, **kwargs) -> requests.Session:
        http = self.session(accept)
        body = {**CREDENTIALS, "localPassword": self.service.admin_password}
        response = http.post(f"{self.url}/sessions", **({"json": body} | kwargs))
        assert response.status_code == 200, response.text
        http.headers["X-VCAV-Auth"] = response.headers["X-VCAV-Auth"]
        return http


# About the HTTP surface, not where backups are kept: the folder only, so CI time does not double.
@pytest.fixture(scope="module")
def backend():
    return "folder"


@pytest.fixture(scope="module", params=["generated-certificate", "tls-proxy"])
def deployment(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    redis_server = RedisServer(root / "redis").start()
    source = root / "etc"
    source.mkdir()
    (source / "app.conf").write_text("answer = 42\n")
    if request.param == "generated-certificate":
        env = {"H4_TLS_CERT_FILE": "", "H4_TLS_KEY_FILE": ""}
    else:
        env = {"H4_TLS": "off", "H4_PROXY_HOPS": "1"}
    service = Service(root / "service", redis_server, {"etc": source},
                      extra_env={**env, "H4_SCRYPT_WORK_FACTOR": "10"}).start(workers=1)
    proxy = None
    if request.param == "generated-certificate":
        yield Deployment(service, service.url, service.ca_file)
    else:
        proxy = TlsProxy(service.port, *run_certificate()).start()
        yield Deployment(service, proxy.url, run_certificate()[0])
    if proxy:
        proxy.stop()
    stop_in_background(service, redis_server)


def test_the_printed_fingerprint_is_the_certificates(deployment):
    if deployment.url != deployment.service.url:
        pytest.skip("behind the proxy the API prints no certificate")
    cert = x509.load_pem_x509_certificate(deployment.ca_file.read_bytes())
    expected = ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))
    printed = re.findall(r"SHA-256 fingerprint is ([0-9A-F:]{95})", deployment.service.logs())
    assert printed and set(printed) == {expected}


@pytest.mark.parametrize("accept", [
    None, "application/json", "application/json;charset=UTF-8",
    *(f"application/vnd.vmware.h4-v{v}+json" for v in VENDOR_VERSIONS),
    *(f"application/vnd.vmware.h4-v{v}+json;charset=UTF-8" for v in VENDOR_VERSIONS),
])
def test_login_with_each_accept_and_reuse_of_its_content_type(deployment, accept):
    """Some clients echo the login response's Content-Type as their Accept afterwards."""
    echoed = deployment.session(_login_content_type(deployment, accept))
    echoed.headers["X-VCAV-Auth"] = deployment.login(accept).headers["X-VCAV-Auth"]
    assert echoed.get(f"{deployment.url}/sessions").status_code == 200


def _login_content_type(deployment, accept: str | None) -> str:
    http = deployment.session(accept)
    body = {**CREDENTIALS, "localPassword": deployment.service.admin_password}
    return http.post(f"{deployment.url}/sessions", json=body).headers["Content-Type"]


def test_login_with_a_pretty_printed_body(deployment):
    body = {**CREDENTIALS, "localPassword": deployment.service.admin_password}
    deployment.login(data=json.dumps(body, indent=4),
                     headers={"Content-Type": "application/vnd.vmware.h4-v4.7+json"})


def _poll(http, url: str, task_id: str, seconds: float = 120) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        task = http.get(f"{url}/tasks/{task_id}").json()
        assert 0 <= task["progress"] <= 100
        if task["state"] not in ("RUNNING", "QUEUED"):
            return task
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} still running")


@pytest.mark.parametrize("body", [{}, {"password": "replay-Pa$$w0rd"}])
def test_backup_then_poll_to_the_end(deployment, body):
    http = deployment.login("application/vnd.vmware.h4-v4.7+json;charset=UTF-8")
    response = http.post(f"{deployment.url}/backups", json=body,
                         headers={"operationID": "replay-op-1"})
    assert response.status_code == 202, response.text
    assert response.headers["Location"].startswith("https://")
    task = _poll(http, deployment.url, assert_api_task(response.json())["id"])
    assert task["state"] == "SUCCEEDED" and task["error"] is None, task


def test_a_failing_task_shows_error_code_and_msg(deployment):
    http = deployment.login()
    missing = "00000000-0000-4000-8000-000000000000"
    response = http.post(f"{deployment.url}/backups/{missing}/verify", json={})
    if response.status_code == 202:
        task = _poll(http, deployment.url, response.json()["id"])
        assert task["state"] == "FAILED" and task["error"]["code"] and task["error"]["msg"]
    else:
        assert response.json()["code"] and response.json()["msg"]


@pytest.mark.parametrize("query", [
    {"site": "h4backup"}, {"state": "SUCCEEDED"}, {"startTimeAfter": "0"}, {"user": "admin"},
    {"operationID": "replay-op-1"},
])
def test_task_list_filters(deployment, query):
    http = deployment.login()
    response = http.get(f"{deployment.url}/tasks", params=query)
    assert response.status_code == 200 and isinstance(response.json()["items"], list)


def test_logout_then_the_token_is_refused_as_vcda_does(deployment):
    http = deployment.login()
    logout = http.delete(f"{deployment.url}/sessions")
    assert logout.status_code == 204 and "Content-Type" not in logout.headers
    again = http.get(f"{deployment.url}/sessions")
    assert again.status_code == 401
    assert again.headers["WWW-Authenticate"] == "Authentication Token Required"


def test_diagnostics_about_and_health_task(deployment):
    http = deployment.login()
    assert_about_info(http.get(f"{deployment.url}/diagnostics/about").json())
    started = http.post(f"{deployment.url}/diagnostics/health")
    assert started.status_code == 202
    assert started.headers["Location"].startswith("https://")
    task = _poll(http, deployment.url, started.json()["id"], seconds=10)
    assert task["state"] == "SUCCEEDED"
    assert_cloud_health_info(task["result"])


def test_sites_name_the_https_address(deployment):
    http = deployment.login()
    (site,) = http.get(f"{deployment.url}/sites").json()
    assert site["isLocal"] and site["apiUrl"].startswith(deployment.url)
