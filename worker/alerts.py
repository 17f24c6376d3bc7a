"""Turning the events ended tasks left into webhook deliveries, and sending them
(`common/alerts.py` says what a delivery is and how it is signed)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from common import alerts
from common.clock import now_ms
from common.store import Store

log = logging.getLogger("h4backup.worker")

# How often the overdue check reads the listing: an alert about hours or days of silence
# loses nothing by being a minute late.
OVERDUE_CHECK_SECONDS = 60
# Sends the Celery message of one delivery, by its id.
SendDelivery = Callable[[str], None]


def dispatch(store: Store, send_delivery: SendDelivery, batch: int = 100) -> int:
    """One delivery per waiting event and target that asked for it; how many were queued."""
    config = store.get_alerts()
    if not config:
        return 0
    queued = _overdue(store, send_delivery, config, now_ms())
    for event_or_state, subject in store.take_alert_events(batch):
        event = event_or_state if event_or_state == alerts.TEST_EVENT else alerts.event_name(
            event_or_state)
        task = None if event == alerts.TEST_EVENT else store.task_document(subject)
        for target in config["targets"]:
            if event == alerts.TEST_EVENT or event in target["events"]:
                queued += _queue(store, send_delivery, target["url"], event, task)
    return queued


def _overdue(store: Store, send_delivery: SendDelivery, config: dict, now: int) -> int:
    """`backup.overdue`, once per episode: the schedule is on and no scheduled backup has
    been listed for `overdueAfterSeconds` (counted from the schedule's setting before the
    first one)."""
    after = config.get("overdueAfterSeconds")
    if not after or not store.overdue_check_due(OVERDUE_CHECK_SECONDS):
        return 0
    if not (store.get_schedule() or {}).get("enabled"):
        return 0
    newest = next((b for b in store.list_backups() if b.get("kind") == "scheduled"), None)
    since = int(newest["generatedOn"]) if newest else store.schedule_since()
    if since is None or now - since < after * 1000:
        return 0
    if not store.note_overdue(newest["id"] if newest else f"none:{since}"):
        return 0
    log.warning("scheduled backups are overdue: none listed since %d", since)
    details = alerts.overdue_details(newest, since, after)
    return sum(_queue(store, send_delivery, target["url"], alerts.OVERDUE_EVENT, None, details)
               for target in config["targets"] if alerts.OVERDUE_EVENT in target["events"])


def _queue(store: Store, send_delivery: SendDelivery, url: str, event: str,
           task: dict | None, details: dict | None = None) -> int:
    delivery_id = str(uuid.uuid4())
    body = alerts.event_body(delivery_id, event, now_ms(), task, details)
    store.keep_delivery(delivery_id, alerts.Delivery(delivery_id, url, event, body).to_json())
    send_delivery(delivery_id)
    return 1


def deliver(store: Store, secret: bytes, delivery_id: str, attempt: int) -> bool:
    """One attempt at a delivery, logged; True when it needs no other (delivered, or gone)."""
    kept = store.delivery(delivery_id)
    if kept is None:
        log.warning("alert delivery %s expired before it was sent", delivery_id)
        return True
    delivery = alerts.Delivery.from_json(kept)
    delivered, outcome = alerts.send(delivery, secret, int(time.time()))
    last = attempt >= alerts.MAX_ATTEMPTS
    store.log_delivery({"id": delivery_id, "event": delivery.event, "url": delivery.url,
                        "attempt": attempt, "delivered": delivered, "outcome": outcome,
                        "at": now_ms(), "final": delivered or last})
    if not delivered:
        log.warning("alert delivery %s to %s failed (attempt %d of %d): %s", delivery_id,
                    delivery.url, attempt, alerts.MAX_ATTEMPTS, outcome)
    return delivered or last
