"""A TLS-terminating reverse proxy for tests: HTTPS outside, plain HTTP to the API inside,
with the X-Forwarded-For/Proto/Host headers a real proxy adds."""

from __future__ import annotations

import http.client
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailer", "transfer-encoding", "upgrade"}


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream: tuple[str, int]

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers.update({"X-Forwarded-For": self.client_address[0],
                        "X-Forwarded-Proto": "https",
                        "X-Forwarded-Host": self.headers.get("Host", "")})
        upstream = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            self._relay(upstream.getresponse())
        finally:
            upstream.close()

    def _relay(self, response: http.client.HTTPResponse) -> None:
        data = response.read()
        self.send_response(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _forward

    def log_message(self, *_args) -> None:  # quiet
        pass


class TlsProxy:
    """Serves https://127.0.0.1:<port> in a thread, forwarding to http://127.0.0.1:<upstream>."""

    def __init__(self, upstream_port: int, cert: Path, key: Path) -> None:
        handler = type("Forward", (_Forward,), {"upstream": ("127.0.0.1", upstream_port)})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> TlsProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
