"""Alerts: webhook deliveries of task events, signed so that a receiver can trust them.

Every task that ends while alert targets are configured leaves an event in Redis, pushed by
the same script that ends the task (`common/store/scripts.FINISH`), so no path that ends a
task (a worker, the reaper, a cancel) can skip it. Beat's one-second tick turns each event
into one delivery per target that asked for it; a worker task sends each delivery and tries
again with a growing pause when the receiver is away, never holding up the task that ended.

A delivery is a POST of a JSON body with these headers:

    X-H4-Event:      task.failed | task.succeeded | test
    X-H4-Delivery:   the delivery's id (the same on every attempt: receivers drop repeats)
    X-H4-Signature:  t=<unix seconds>,v1=<hex HMAC-SHA256 over "<t>.<body>">

The key is the service's alert secret (H4_ALERT_SECRET_FILE), never sent anywhere: a receiver
checks v1 with it, and refuses a t too far from its own clock, which stops replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.privatefiles import create_once

OVERDUE_EVENT = "backup.overdue"
EVENTS = ("task.failed", "task.succeeded", OVERDUE_EVENT)
TEST_EVENT = "test"
# Attempts per delivery, and the pause before each retry: 2, 4, 8 ... 256 s, about 8.5 min.
MAX_ATTEMPTS = 9
TIMEOUT_SECONDS = 5.0
MAX_TARGETS = 10


def retry_pause(attempt: int) -> int:
    """Seconds to wait after failed attempt number `attempt` (1 for the first)."""
    return min(2 ** attempt, 256)


def event_name(final_state: str) -> str:
    return "task.succeeded" if final_state == "SUCCEEDED" else "task.failed"


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(secret: bytes, header: str, body: bytes) -> bool:
    """What a receiver does (and the tests): the header's v1 is the HMAC of its t and body."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    if not parts.get("t", "").isdigit():
        return False
    expected = signature(secret, int(parts["t"]), body)
    return hmac.compare_digest(expected, header)


def load_secret(path: Path) -> bytes:
    """The alert secret: the file's first line, made (random, private) when missing."""
    create_once(path, secrets.token_hex(32) + "\n")
    line = path.read_text().strip()
    if len(line) < 32:
        raise ValueError(f"{path}: an alert secret needs at least 32 characters")
    return line.encode()


@dataclass(frozen=True)
class Delivery:
    id: str
    url: str
    event: str
    body: bytes

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "url": self.url, "event": self.event,
                           "body": self.body.decode()})

    @classmethod
    def from_json(cls, text: str) -> Delivery:
        data = json.loads(text)
        return cls(data["id"], data["url"], data["event"], data["body"].encode())


def event_body(delivery_id: str, event: str, occurred_ms: int,
               task: dict[str, Any] | None, details: dict[str, Any] | None = None) -> bytes:
    """`task` for a task's end; `details` for an event that is about no task (overdue)."""
    body = {"id": delivery_id, "event": event, "occurredAt": occurred_ms, "task": task}
    if details is not None:
        body["details"] = details
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def overdue_details(newest: dict[str, Any] | None, since_ms: int,
                    after_seconds: int) -> dict[str, Any]:
    return {"lastScheduledBackup": newest["id"] if newest else None,
            "lastScheduledBackupOn": since_ms, "overdueAfterSeconds": after_seconds}


def send(delivery: Delivery, secret: bytes, now_seconds: int,
         timeout: float = TIMEOUT_SECONDS) -> tuple[bool, str]:
    """One attempt: (delivered, what happened). A 2xx answer is delivered; anything else,
    a refused connection or a timeout is not. Redirects are not followed."""
    request = urllib.request.Request(delivery.url, data=delivery.body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "h4backup-alerts",
        "X-H4-Event": delivery.event, "X-H4-Delivery": delivery.id,
        "X-H4-Signature": signature(secret, now_seconds, delivery.body)})
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            answer.read(4096)  # bounded: only the status matters
            return 200 <= answer.status < 300, f"HTTP {answer.status}"
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"{type(reason).__name__}: {reason}"[:200]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)
