"""What the HTTP server itself refuses is an ApiError, and floods of anonymous calls are cheap."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time

import pytest
import requests

from tests.integration.harness import RedisServer, Service, stop_in_background, wait_until

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("refusals")
    redis_server = RedisServer(root / "redis").start()
    running = Service(root / "service", redis_server, {"etc": root},
                      extra_env={"H4_METRICS_TOKEN": "scrape-T0ken"}).start(workers=1)
    yield running
    stop_in_background(running, redis_server)


def _raw(service, request: bytes) -> tuple[int, str, bytes]:
    with service.connect(timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    content_type = next((line.split(":", 1)[1].strip() for line in lines
                         if line.lower().startswith("content-type:")), "")
    return int(lines[0].split()[1]), content_type, body


@pytest.mark.parametrize("request_bytes, status, code", [
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h4\r\n\r\n", 414, "URITooLong"),
    (b"GET /tasks HTTP/1.1\r\nHost: h4\r\n" + b"".join(
        f"X-Filler-{n}: {'v' * 100}\r\n".encode() for n in range(120)) + b"\r\n",
     431, "RequestHeaderFieldsTooLarge"),
    (b"GET /tasks HTTP/1.1\r\nHost: h4\r\nX-Filler: " + b"v" * 40000 + b"\r\n\r\n",
     431, "RequestHeaderFieldsTooLarge"),
    (b"GET /tasks HTTP/1.1\r\nHost: h4\r\nX-VCAV-Auth: abc\r\r\n\r\n", 400, "BadUserInput"),
    (b"GARBAGE\r\n\r\n", 400, "BadUserInput"),
])
def test_refusals_of_the_http_server_are_api_errors(service, request_bytes, status, code):
    got_status, content_type, body = _raw(service, request_bytes)
    assert got_status == status
    assert content_type.startswith("application/vnd.vmware.h4-v4.5+json")
    assert json.loads(body)["code"] == code


def test_duplicate_keys_are_refused_and_make_no_backup(service):
    http = service.login()
    response = http.post(f"{service.url}/backups", data='{"password":"a","password":null}',
                         headers={"Content-Type": "application/json"})
    assert (response.status_code, response.json()["code"]) == (400, "BadUserInput")
    assert http.get(f"{service.url}/tasks").json()["total"] == 0


def test_a_lone_surrogate_is_a_400_not_a_500(service):
    http = service.login()
    response = http.post(f"{service.url}/backups", data='{"password":"\\ud800"}',
                         headers={"Content-Type": "application/json"})
    assert (response.status_code, response.json()["code"]) == (400, "BadUserInput")


def test_metrics_need_the_token(service):
    assert requests.get(f"{service.url}/metrics", timeout=10).status_code == 401
    scraped = requests.get(f"{service.url}/metrics", timeout=10,
                           headers={"Authorization": "Bearer scrape-T0ken"})
    assert scraped.status_code == 200 and "h4_tasks_running" in scraped.text


def _flood(url: str, seconds: float, counts: list[int]) -> None:
    deadline = time.monotonic() + seconds
    with requests.Session() as anonymous:
        while time.monotonic() < deadline:
            anonymous.get(url, timeout=10)
            counts.append(1)


def _worker_pids(service) -> list[int]:
    worker = service.workers[0]
    with open(f"/proc/{worker.pid}/task/{worker.pid}/children") as listing:
        return [worker.pid, *(int(pid) for pid in listing.read().split())]


def test_a_health_flood_while_workers_hang_leaves_other_calls_fast(service):
    http = service.login()
    pids = _worker_pids(service)
    for pid in pids:  # a worker that takes no message: every real check waits its deadline
        os.kill(pid, signal.SIGSTOP)
    try:
        counts: list[int] = []
        flooders = [threading.Thread(target=_flood, args=(f"{service.url}/health", 8, counts))
                    for _ in range(20)]
        for thread in flooders:
            thread.start()
        time.sleep(1)
        timings = []
        for _ in range(20):
            started = time.monotonic()
            assert http.get(f"{service.url}/tasks", timeout=10).status_code == 200
            timings.append(time.monotonic() - started)
            time.sleep(0.2)
        for thread in flooders:
            thread.join(30)
        pings = service.redis.client().llen("h4backup.control")
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    assert max(timings) < 0.5, timings
    # One check at a time per API process, each waiting its 3 s deadline: a handful of pings
    # for the hundreds of calls.
    assert len(counts) > 100 and pings <= 5, (len(counts), pings)
    anonymous = requests.get(f"{service.url}/health", timeout=10).json()
    assert set(anonymous["workers"]) == {"ok"}
    wait_until(lambda: requests.get(f"{service.url}/health", timeout=10).status_code == 200,
               30, "health to recover")


def test_a_token_ending_in_cr_is_refused_with_an_api_error_that_says_why(service):
    token = service.login().headers["X-VCAV-Auth"]
    status, content_type, body = _raw(
        service, f"GET /tasks HTTP/1.1\r\nHost: h4\r\nX-VCAV-Auth: {token}\r\r\n\r\n".encode())
    assert (status, json.loads(body)["code"]) == (400, "BadUserInput")
    assert content_type.startswith("application/vnd.vmware.h4-v4.5+json")
    assert "carriage return" in json.loads(body)["msg"]


def test_plain_http_to_the_https_port_gets_an_api_error_saying_so(service):
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(b"GET /diagnostics/about HTTP/1.1\r\nHost: h4\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert "https://" in json.loads(body)["msg"]
