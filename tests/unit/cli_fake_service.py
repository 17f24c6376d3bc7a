"""A fake h4backup service on 127.0.0.1 for the client's unit tests: just enough of the API
(login, backup list, ranged download, a task that ends, restore/verify routes on demand),
over plain HTTP or, given an SSL context, HTTPS."""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cli.transfer import vcda_hash

BACKUP_ID = "0b6a4c36-8c9e-4c55-9d0e-2f1e7f6c1a11"
TASK_ID = "5d2e8f0a-1b7c-4c3d-8e9f-0a1b2c3d4e5f"
TOKEN = "test-token"
CONTENT = os.urandom(300_000)
GOOD_HASH = vcda_hash(hashlib.sha512(CONTENT).hexdigest())


class FakeService(BaseHTTPRequestHandler):
    """Just enough of the API: backup list, ranged download, one task that ends."""

    state: dict

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj) -> None:
        self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json"})

    def _authorized(self) -> bool:
        self.state["requests"].append((self.command, self.path, dict(self.headers)))
        if self.headers.get("X-VCAV-Auth") == TOKEN:
            return True
        self._json(401, {"args": [], "code": "NotAuthenticated",
                         "msg": "Authentication required.", "stacktrace": ""})
        return False

    def do_GET(self) -> None:
        if not self._authorized():
            return
        if self.path.partition("?")[0] == "/backups":
            self._json(200, [{"id": BACKUP_ID, "generatedOn": 1, "hash": self.state["listed"]}])
        elif self.path == f"/backups/{BACKUP_ID}":
            self._file()
        elif self.path == "/backups/config/retention-preview":
            self._json(200, RETENTION_PREVIEW)
        elif self.path == f"/tasks/{TASK_ID}":
            tasks = self.state["tasks"]
            self._json(200, tasks.pop(0) if len(tasks) > 1 else tasks[0])
        else:
            self._json(404, {"args": [], "code": "NotFound", "msg": "No such resource"})

    do_HEAD = do_GET

    def do_POST(self) -> None:
        if self.path == "/sessions":
            return self._login()
        if not self._authorized():
            return
        if self.path.endswith(("/verify", "/restore")) and not self.state["part_b"]:
            return self._json(404, {"args": [], "code": "NotFound", "msg": "No such resource"})
        self.state["bodies"].append(json.loads(self.rfile.read(
            int(self.headers.get("Content-Length", 0))) or b"{}"))
        self._json(202, self.state["tasks"][0])

    def do_PUT(self) -> None:
        if self._authorized():
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            self.state["bodies"].append(body)
            self._json(200, body)

    def do_DELETE(self) -> None:
        if self._authorized():
            self._send(204, b"")

    def _login(self) -> None:
        self.state["requests"].append((self.command, self.path, dict(self.headers)))
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._send(200, json.dumps({"user": "admin", "roles": ["ADMINISTRATORS"]}).encode(),
                   {"Content-Type": "application/json", "X-VCAV-Auth": TOKEN})

    def _file(self) -> None:
        body = self.state["served"]
        headers = {"Content-Disposition": f"attachment; filename={BACKUP_ID}.tar.zst",
                   "X-Content-SHA512": GOOD_HASH}
        start = int(self.headers.get("Range", "bytes=0-")[6:].rstrip("-") or 0)
        if start >= len(body):
            return self._json(416, {"args": [], "code": "RangeNotSatisfiable", "msg": ""})
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
        self._send(206 if start else 200, body[start:], headers)


RETENTION_PREVIEW = {
    "keepRules": {"keepDaily": 7, "keepYearly": 2}, "timeZone": "Europe/Berlin",
    "keep": [{"id": "new", "generatedOn": 3_000_000_000_000, "kind": "scheduled",
              "reasons": ["daily 2065-01-24", "yearly 2065"]}],
    "delete": [{"id": "old", "generatedOn": 1_000_000_000_000, "kind": "scheduled",
                "reasons": []}],
}


def task(state: str, progress: int, error: dict | None = None) -> dict:
    return {"id": TASK_ID, "state": state, "progress": progress, "startTime": 1000,
            "endTime": -1 if state == "RUNNING" else 3000, "error": error, "warnings": [],
            "result": {"id": BACKUP_ID, "generatedOn": 1, "hash": GOOD_HASH}
            if state == "SUCCEEDED" else None,
            "resultType": "BackupInfo" if state == "SUCCEEDED" else None,
            "workflowInfo": {"type": "backup", "resourceType": "backup",
                             "resourceId": BACKUP_ID}}


def start(state: dict, tls: ssl.SSLContext | None = None) -> ThreadingHTTPServer:
    """Serve `state` (shared with the test, which changes it between requests)."""
    handler = type("Handler", (FakeService,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        # The handshake runs in accept(); one a client refuses only drops that connection.
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    scheme = "https" if tls else "http"
    state["url"] = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    return server
