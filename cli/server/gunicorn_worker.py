"""The API's gunicorn worker: a greenlet per connection, deadlines on every read, ApiError refusals.

gunicorn's gthread worker gives each connection a thread and reads without a deadline, so 16
slow sockets held every thread (issue: slow clients took the API down). Here each connection
is a gevent greenlet (a few KiB), and no client can hold one for long:

- the request line and headers must arrive within H4_HEADER_TIMEOUT_SECONDS (a total, not a
  per-read timeout, so a header line every second does not keep a connection alive);
- every read and write waits at most H4_CLIENT_IDLE_SECONDS for the peer;
- a body must keep up a minimum rate after a grace of H4_BODY_TIMEOUT_SECONDS (the rule of
  Apache's mod_reqtimeout), so a large upload at a normal speed is never cut;
- one address may hold at most H4_CONNECTIONS_PER_ADDRESS connections per worker process.

Whatever gunicorn itself refuses (a request line or header too long, a malformed header) is
answered with a vCDA ApiError in JSON, as the application answers everything else.
"""

from __future__ import annotations

import collections
import json
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import gevent
from gunicorn import util
from gunicorn.workers.ggevent import GeventWorker

from cli.server.tls import server_context, tls_files
from common import secrecy
from common.config import Settings, load_settings

# Below this rate a body is not being sent, it is being held: 1 s of grace per 64 KiB received.
MIN_BODY_BYTES_PER_SECOND = 64 * 1024
API_ERROR_TYPE = "application/vnd.vmware.h4-v4.5+json;charset=UTF-8"
# gunicorn's refusals, by status, as the ApiError codes the application uses.
REFUSAL_CODES = {400: "BadUserInput", 403: "Forbidden", 414: "URITooLong",
                 417: "ExpectationFailed", 431: "RequestHeaderFieldsTooLarge",
                 429: "TooManyConnections", 500: "GeneralServerFailure",
                 501: "NotImplemented"}


class BodyTimeout(TimeoutError):
    """The client sent its body too slowly; the app answers it with a 408 ApiError."""


def api_error_bytes(status: int, reason: str, message: str, extra_headers: str = "") -> bytes:
    """A complete HTTP/1.1 response carrying an ApiError, for refusals made outside the app."""
    body = json.dumps({"args": [], "code": REFUSAL_CODES.get(status, reason.replace(" ", "")),
                       "msg": message or reason, "stacktrace": ""}, sort_keys=True).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            f"Content-Type: {API_ERROR_TYPE}\r\nContent-Length: {len(body)}\r\n"
            f"{extra_headers}\r\n")
    return head.encode("latin-1") + body


# A token cut out of `curl -i` output with grep and cut keeps the line's CR: say so.
CR_HINT = (" A header value may not hold a carriage return; if a token was cut out of "
           "`curl -i` output, strip its trailing \\r (for example with tr -d '\\r').")


def _write_api_error(sock, status_int: int, reason: str, mesg: str) -> None:
    if mesg.startswith("Invalid HTTP Header"):
        mesg += CR_HINT
    util.write_nonblock(sock, api_error_bytes(status_int, reason, mesg))


class DeadlineInput:
    """wsgi.input whose reads stop once the body falls behind the minimum rate."""

    def __init__(self, source: Any, grace_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._source, self._clock = source, clock
        self._started, self._grace, self._received = clock(), grace_seconds, 0

    def _remaining(self) -> float:
        allowed = self._grace + self._received / MIN_BODY_BYTES_PER_SECOND
        return allowed - (self._clock() - self._started)

    def _bounded(self, read: Callable[[], bytes]) -> bytes:
        """One read, which must end before the body falls behind (a read waits for all it asks)."""
        remaining = self._remaining()
        if remaining <= 0:
            raise BodyTimeout("the request body arrived too slowly")
        with gevent.Timeout(remaining, BodyTimeout("the request body arrived too slowly")):
            data = read()
        self._received += len(data)
        return data

    def read(self, size: int | None = None) -> bytes:
        return self._bounded(lambda: self._source.read(size))

    def readline(self, size: int | None = None) -> bytes:
        return self._bounded(lambda: self._source.readline(size))

    def readlines(self, hint: int | None = None) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")


class AddressLimiter:
    """Counts open connections per client address in this process."""

    def __init__(self, limit: int) -> None:
        self.limit, self._open = limit, collections.Counter()

    @contextmanager
    def slot(self, address: str) -> Iterator[bool]:
        if self._open[address] >= self.limit:
            yield False
            return
        self._open[address] += 1
        try:
            yield True
        finally:
            self._open[address] -= 1
            if not self._open[address]:
                del self._open[address]


class IdleWait:
    """A connection waiting for its next request: at most `seconds`, and no longer once the
    worker is told to stop, so that an idle keep-alive client cannot hold a stopping worker
    for its whole idle time (a request in flight still finishes)."""

    def __init__(self, waits: set[IdleWait], seconds: float) -> None:
        self._waits = waits
        self._timeout = gevent.Timeout(seconds, False)
        self._greenlet: Any = None

    def __enter__(self) -> IdleWait:
        self._greenlet = gevent.getcurrent()
        self._waits.add(self)
        self._timeout.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> bool | None:
        self._waits.discard(self)
        return self._timeout.__exit__(*exc_info)

    def end_now(self) -> None:
        # Thrown into the waiting connection, where its own block takes it as a timeout.
        self._timeout.cancel()
        gevent.kill(self._greenlet, self._timeout)


class ApiWorker(GeventWorker):
    """gunicorn's gevent worker with the deadlines and limits described above."""

    settings: Settings
    limiter: AddressLimiter | None

    def init_process(self) -> None:
        self.idle_waits: set[IdleWait] = set()
        self.settings = load_settings()
        # Behind a proxy every connection comes from the proxy: the proxy limits per client.
        per_address = self.settings.connections_per_address
        self.limiter = AddressLimiter(per_address) if not self.settings.proxy_hops else None
        # gunicorn writes its refusals as HTML pages through this one function.
        util.write_error = _write_api_error
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        # TLS is this worker's own business, not gunicorn's: gevent's server would do each
        # handshake before `handle`, with no deadline and outside the per-address limit. Made
        # here, after gevent patched the ssl module, so its sockets are gevent's.
        self.tls = server_context(tls_files(self.settings)) if self.settings.tls else None
        pool = gevent.get_hub().threadpool
        secrecy.offload = lambda function, *args, **kwargs: pool.apply(function, args, kwargs)
        app, grace = self.wsgi, self.settings.body_timeout_seconds
        scheme = "https" if self.tls else None

        def with_body_deadline(environ: dict, start_response: Callable) -> Any:
            environ["wsgi.input"] = DeadlineInput(environ["wsgi.input"], grace)
            if scheme:
                environ["wsgi.url_scheme"] = scheme
            return app(environ, start_response)

        self.wsgi = with_body_deadline

    def timeout_ctx(self) -> AbstractContextManager[Any]:
        # Waiting for the next request and reading its headers, in total.
        return IdleWait(self.idle_waits, self._header_deadline() if self.alive else 0)

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        for wait in list(self.idle_waits):
            wait.end_now()

    def _header_deadline(self) -> float:
        # Below the idle timeout, so the deadline ends a slow header first, quietly.
        return min(self.settings.header_timeout_seconds, self.settings.client_idle_seconds - 0.5)

    def handle(self, listener, client, addr) -> None:
        client.setblocking(1)
        client.settimeout(self.settings.client_idle_seconds)
        address = addr[0] if isinstance(addr, tuple) else ""
        with self._slot(address) as admitted:
            connection = self._secure(client)
            if connection is None:
                return
            if admitted:
                # GeventWorker.handle would make the socket blocking again, without a timeout.
                return super(GeventWorker, self).handle(listener, connection, addr)
            self._refuse_busy_address(connection, address)

    def _slot(self, address: str) -> AbstractContextManager[bool]:
        if self.limiter is None or not address:
            return nullcontext(True)
        return self.limiter.slot(address)

    def _secure(self, client):
        """The connection after its TLS handshake (within the header deadline), or None."""
        if self.tls is None:
            return client
        with gevent.Timeout(self._header_deadline(), False):
            try:
                if _plain_http(client):
                    _answer_plain_http(client)
                    return None
                return self.tls.wrap_socket(client, server_side=True)
            except (ssl.SSLError, OSError) as error:
                self.log.debug("TLS handshake failed: %s", error)
        util.close(client)
        return None

    def _refuse_busy_address(self, client, address: str) -> None:
        self.log.debug("refused a connection from %s: too many open", address)
        message = (f"Too many open connections from {address}; "
                   f"at most {self.settings.connections_per_address} are served at once.")
        try:
            client.sendall(api_error_bytes(429, "Too Many Requests", message,
                                           "Retry-After: 5\r\n"))
        except OSError:
            pass
        finally:
            util.close(client)


def _plain_http(client) -> bool:
    """A TLS connection opens with a handshake record (0x16); a plain request with a letter."""
    first = client.recv(1, socket.MSG_PEEK)
    return bool(first) and first.isalpha()


def _answer_plain_http(client) -> None:
    message = "This port speaks HTTPS: use https:// (the client sent plain HTTP)."
    try:
        # Read the request first: closing with it unread would reset the connection, and the
        # client would see the reset instead of this answer.
        client.recv(64 * 1024)
        client.sendall(api_error_bytes(400, "Bad Request", message))
        client.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        util.close(client)
