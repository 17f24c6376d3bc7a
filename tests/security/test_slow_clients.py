"""Slow clients cannot take the API down: header and body deadlines, per-address limits.

The slow connections come from 127.0.0.2 and 127.0.0.3 (the whole 127/8 range is loopback on
Linux), so the per-address limit sorts them apart from the normal client on 127.0.0.1.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time

import pytest

from tests.integration.harness import RedisServer, Service, stop_in_background, wait_until

pytestmark = pytest.mark.faults

HEADER_SECONDS, IDLE_SECONDS, BODY_SECONDS, PER_ADDRESS = 2, 3, 2, 32
SLOW_CONNECTIONS = 200


@pytest.fixture(scope="module")
def slow_service(tmp_path_factory):
    root = tmp_path_factory.mktemp("slow")
    redis_server = RedisServer(root / "redis").start()
    service = Service(root / "service", redis_server, {"etc": root}, extra_env={
        "H4_HEADER_TIMEOUT_SECONDS": str(HEADER_SECONDS),
        "H4_CLIENT_IDLE_SECONDS": str(IDLE_SECONDS),
        "H4_BODY_TIMEOUT_SECONDS": str(BODY_SECONDS),
        "H4_CONNECTIONS_PER_ADDRESS": str(PER_ADDRESS),
    }).start(workers=1)
    yield service
    stop_in_background(service, redis_server)


class HeaderDripper(threading.Thread):
    """Many connections, each sending one more header line every 1.5 s (slowloris)."""

    def __init__(self, service, count: int, source: str, seconds: float) -> None:
        super().__init__(daemon=True)
        self.service, self.count, self.source, self.seconds = service, count, source, seconds
        self.opened, self.closed_by_server = 0, 0

    def run(self) -> None:
        socks = []
        for _ in range(self.count):
            sock = self.service.connect(self.source)
            sock.sendall(b"GET /tasks HTTP/1.1\r\nHost: h4\r\n")
            socks.append(sock)
        self.opened = len(socks)
        deadline, line = time.monotonic() + self.seconds, 0
        while socks and time.monotonic() < deadline:
            time.sleep(1.5)
            line += 1
            socks = [s for s in socks if self._drip(s, line)]
        self.closed_by_server = self.opened - len(socks)
        for sock in socks:
            sock.close()

    def _drip(self, sock: socket.socket, line: int) -> bool:
        try:
            sock.sendall(f"X-Slow-{line}: {line}\r\n".encode())
            return True
        except OSError:
            sock.close()
            return False


def _timed_get(http, url: str) -> float:
    started = time.monotonic()
    response = http.get(url, timeout=5)
    assert response.status_code == 200, response.text
    return time.monotonic() - started


def test_normal_client_answers_within_1s_while_200_connections_drip_headers(slow_service):
    http = slow_service.login()
    dripper = HeaderDripper(slow_service, SLOW_CONNECTIONS, "127.0.0.2", seconds=12)
    dripper.start()
    wait_until(lambda: dripper.opened == SLOW_CONNECTIONS, 20, "the slow connections")
    times = [_timed_get(http, f"{slow_service.url}/tasks") for _ in range(40)
             if time.sleep(0.2) is None]
    dripper.join(30)
    assert max(times) < 1.0, times
    # The header deadline ends every dripping connection long before the drip would stop.
    assert dripper.closed_by_server == SLOW_CONNECTIONS


def _read_response(sock: socket.socket) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def test_a_body_that_stops_after_one_byte_is_ended_with_408(slow_service):
    with slow_service.connect("127.0.0.1") as sock:
        sock.settimeout(IDLE_SECONDS + BODY_SECONDS + 10)
        started = time.monotonic()
        sock.sendall(b"POST /sessions HTTP/1.1\r\nHost: h4\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        status, body = _read_response(sock)
    assert (status, body["code"]) == (408, "RequestTimeout")
    assert time.monotonic() - started < IDLE_SECONDS + 3


def _trickle(sock: socket.socket, seconds: float) -> None:
    """One byte a second (under the idle timeout) until the server answers."""
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and not select.select([sock], [], [], 0)[0]:
            sock.sendall(b" ")
            time.sleep(1)
    except OSError:
        pass


def test_a_body_trickled_byte_by_byte_is_ended_at_the_minimum_rate(slow_service):
    with slow_service.connect("127.0.0.1") as sock:
        sock.sendall(b"POST /sessions HTTP/1.1\r\nHost: h4\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
        started = time.monotonic()
        _trickle(sock, seconds=BODY_SECONDS + IDLE_SECONDS + 5)
        status, body = _read_response(sock)
    assert (status, body["code"]) == (408, "RequestTimeout")
    assert time.monotonic() - started < BODY_SECONDS + IDLE_SECONDS + 3


def test_connections_over_the_per_address_limit_get_a_429_api_error(slow_service):
    # connect() returns once the TLS handshake is done: the server holds each of them.
    held = [slow_service.connect("127.0.0.3") for _ in range(PER_ADDRESS)]
    try:
        with slow_service.connect("127.0.0.3") as extra:
            status, body = _read_response(extra)
        assert (status, body["code"]) == (429, "TooManyConnections")
        # Another address is not affected.
        assert _timed_get(slow_service.login(), f"{slow_service.url}/tasks") < 1.0
    finally:
        for sock in held:
            sock.close()


def test_a_connection_that_never_starts_its_tls_handshake_is_closed_at_the_deadline(
        slow_service):
    with socket.create_connection(("127.0.0.1", slow_service.port), timeout=30) as sock:
        started = time.monotonic()
        assert sock.recv(1024) == b""  # nothing sent: the server hangs up
    assert time.monotonic() - started < HEADER_SECONDS + 2


def test_a_stopping_api_closes_idle_keep_alive_connections_instead_of_waiting_for_them(
        tmp_path):
    """An idle keep-alive client must not hold a stopping worker for its idle time: gunicorn
    would wait for it up to the 10 s header deadline, and Docker kills what outlives 10 s."""
    redis_server = RedisServer(tmp_path / "redis").start()
    (tmp_path / "tree").mkdir()
    service = Service(tmp_path / "svc", redis_server, {"tree": tmp_path / "tree"},
                      extra_env={"H4_HEADER_TIMEOUT_SECONDS": "30",
                                 "H4_CLIENT_IDLE_SECONDS": "60"}).start(workers=1)
    try:
        with service.connect() as idle:
            idle.sendall(b"GET /diagnostics/about HTTP/1.1\r\nHost: h4\r\n\r\n")
            status, _ = _read_response(idle)
            assert status == 200
            service.api.terminate()
            idle.settimeout(20)
            assert idle.recv(1) == b""  # closed by the server, not by a 30 s deadline
        assert service.api.wait(20) == 0
        assert "Exception in worker process" not in service.logs()  # a clean stop, no crash
    finally:
        stop_in_background(service, redis_server)
