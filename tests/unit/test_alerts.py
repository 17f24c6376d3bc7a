"""Alerts: events left by the script that ends a task, deliveries signed and retried, the API."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from common import alerts
from common.errors import BackupNotFound
from common.states import TaskState
from common.tasks import new_backup_task, new_task
from tests.conftest import login
from tests.webhooks import Receiver
from worker import alerts as worker_alerts

SECRET = b"s" * 64


@pytest.fixture
def receiver():
    made = Receiver()
    yield made
    made.close()


def _ended_task(store, failed: bool = True):
    row = new_backup_task("admin", "b-1", encrypted=False)
    store.create_backup_task(row, "b-1", 10, None, 60)
    if failed:
        store.fail(row.id, BackupNotFound("b-1").to_api_error())
    else:
        store.succeed(row.id, {"id": "b-1"}, "BackupInfo")
    return row


def test_a_task_leaves_an_event_only_while_targets_are_configured(store):
    _ended_task(store)
    assert store.take_alert_events() == []
    store.put_alerts({"targets": [{"url": "http://x/", "events": ["task.failed"]}]})
    row = _ended_task(store)
    assert store.take_alert_events() == [("FAILED", row.id)]


def test_dispatch_sends_each_event_to_the_targets_that_asked_for_it(store):
    store.put_alerts({"targets": [{"url": "http://a/", "events": ["task.failed"]},
                                  {"url": "http://b/", "events": ["task.succeeded"]}]})
    failed, succeeded = _ended_task(store), _ended_task(store, failed=False)
    sent: list[str] = []
    assert worker_alerts.dispatch(store, sent.append) == 2
    deliveries = [alerts.Delivery.from_json(store.delivery(i)) for i in sent]
    assert [(d.url, d.event) for d in deliveries] == [("http://a/", "task.failed"),
                                                      ("http://b/", "task.succeeded")]
    bodies = [json.loads(d.body) for d in deliveries]
    assert [b["task"]["id"] for b in bodies] == [failed.id, succeeded.id]
    assert bodies[0]["task"]["error"]["code"] == "BackupNotFound"
    assert bodies[0]["id"] == deliveries[0].id


def test_a_delivery_is_signed_over_its_timestamp_and_body(store, receiver):
    store.put_alerts({"targets": [{"url": receiver.url, "events": ["task.failed"]}]})
    _ended_task(store)
    sent: list[str] = []
    worker_alerts.dispatch(store, sent.append)
    assert worker_alerts.deliver(store, SECRET, sent[0], attempt=1)
    headers, body, _when = receiver.got[0]
    assert alerts.verify_signature(SECRET, headers["X-H4-Signature"], body)
    assert not alerts.verify_signature(b"another secret" * 4, headers["X-H4-Signature"], body)
    assert not alerts.verify_signature(SECRET, headers["X-H4-Signature"], body + b" ")
    assert (headers["X-H4-Event"], headers["X-H4-Delivery"]) == ("task.failed", sent[0])
    assert store.delivery_log()[0]["delivered"] is True


def test_a_failed_attempt_is_logged_and_asks_for_another_until_the_last(store, receiver):
    receiver.status = 503
    store.put_alerts({"targets": [{"url": receiver.url, "events": ["task.failed"]}]})
    _ended_task(store)
    sent: list[str] = []
    worker_alerts.dispatch(store, sent.append)
    assert not worker_alerts.deliver(store, SECRET, sent[0], attempt=1)
    assert worker_alerts.deliver(store, SECRET, sent[0], attempt=alerts.MAX_ATTEMPTS)
    log = store.delivery_log()
    assert [(e["attempt"], e["outcome"], e["final"]) for e in log] == [
        (alerts.MAX_ATTEMPTS, "HTTP 503", True), (1, "HTTP 503", False)]


def test_an_unreachable_target_fails_quickly_with_a_reason(store):
    delivery = alerts.Delivery("d1", "http://127.0.0.1:9/", "test", b"{}")
    delivered, outcome = alerts.send(delivery, SECRET, 1, timeout=2)
    assert not delivered and "Connection" in outcome


def test_retry_pauses_grow_and_are_bounded():
    pauses = [alerts.retry_pause(n) for n in range(1, alerts.MAX_ATTEMPTS)]
    assert pauses == sorted(pauses) and pauses[0] == 2 and max(pauses) == 256


def test_the_secret_is_made_once_and_kept_private(tmp_path):
    path = tmp_path / "alert-secret"
    first = alerts.load_secret(path)
    assert alerts.load_secret(path) == first and len(first) == 64
    assert path.stat().st_mode & 0o077 == 0


def test_the_api_sets_targets_sends_a_test_and_shows_the_log(client, store, receiver):
    headers = login(client)
    assert client.post("/alerts/test", headers=headers).status_code == 409
    config = {"targets": [{"url": receiver.url, "events": ["task.failed", "task.succeeded"]}]}
    assert client.put("/alerts/config", json=config, headers=headers).status_code == 200
    assert client.get("/alerts/config", headers=headers).get_json() == {
        **config, "overdueAfterSeconds": None}
    assert client.post("/alerts/test", headers=headers).get_json() == {"targets": 1}
    sent: list[str] = []
    worker_alerts.dispatch(store, sent.append)
    worker_alerts.deliver(store, SECRET, sent[0], attempt=1)
    assert json.loads(receiver.got[0][1])["event"] == "test"
    log = client.get("/alerts/deliveries?limit=5", headers=headers).get_json()
    assert [(e["event"], e["delivered"]) for e in log] == [("test", True)]
    for bad in ({"targets": [{"url": "ftp://x/"}]}, {"targets": [{"url": "http://x/",
                                                                   "events": ["nope"]}]},
                {"targets": [{"url": "http://x/"}] * 11}):
        assert client.put("/alerts/config", json=bad, headers=headers).status_code == 400
    assert client.put("/alerts/config", json={"targets": []}, headers=headers).status_code == 200
    _ended_task(store)
    assert store.take_alert_events() == []


def test_a_refused_scheduled_run_is_an_event_too(store):
    store.put_alerts({"targets": [{"url": "http://x/", "events": ["task.failed"]}]})
    refused = replace(new_task("scheduler", "backup", "backup", "b-9"), state=TaskState.FAILED,
                      end_time=5, error=BackupNotFound("b-9").to_api_error())
    store.record_finished_task(refused)
    assert store.take_alert_events() == [("FAILED", refused.id)]


def _dispatch_a_minute_later(store, sent: list[str]) -> int:
    """The overdue check runs at most once a minute: here the minute has passed."""
    store.redis.delete("h4:alerts:overdue-checked")
    return worker_alerts.dispatch(store, sent.append)


def test_an_overdue_schedule_alerts_once_until_a_new_scheduled_backup(store, monkeypatch):
    store.put_schedule({"enabled": True, "intervalSeconds": 3600, "keepLast": 3})
    store.put_alerts({"targets": [{"url": "http://a/", "events": ["backup.overdue"]},
                                  {"url": "http://b/", "events": ["task.failed"]}],
                      "overdueAfterSeconds": 7200})
    since = store.schedule_since()
    sent: list[str] = []
    monkeypatch.setattr(worker_alerts, "now_ms", lambda: since + 7_199_000)
    assert _dispatch_a_minute_later(store, sent) == 0
    monkeypatch.setattr(worker_alerts, "now_ms", lambda: since + 7_201_000)
    assert _dispatch_a_minute_later(store, sent) == 1
    assert _dispatch_a_minute_later(store, sent) == 0  # once per episode
    delivery = alerts.Delivery.from_json(store.delivery(sent[0]))
    body = json.loads(delivery.body)
    assert (delivery.url, body["event"], body["task"]) == ("http://a/", "backup.overdue", None)
    assert body["details"] == {"lastScheduledBackup": None, "lastScheduledBackupOn": since,
                               "overdueAfterSeconds": 7200}
    row = new_backup_task("scheduler", "s-1", encrypted=False, kind="scheduled")
    store.create_backup_task(row, "s-1", 10, None, 60)
    store.succeed(row.id, {"id": "s-1"}, "BackupInfo", backup={
        "id": "s-1", "generatedOn": since + 7_200_500, "hash": "SHA-512:00", "file": "s-1.tar.zst",
        "size": 1, "kind": "scheduled"})
    store.take_alert_events()
    monkeypatch.setattr(worker_alerts, "now_ms", lambda: since + 2 * 7_200_000 + 1_000)
    assert _dispatch_a_minute_later(store, sent) == 1  # a new episode: overdue again
    store.put_schedule({"enabled": False, "intervalSeconds": 3600})
    monkeypatch.setattr(worker_alerts, "now_ms", lambda: since + 10 * 7_200_000)
    assert _dispatch_a_minute_later(store, sent) == 0  # no schedule, nothing is due


def test_the_overdue_check_reads_the_listing_at_most_once_a_minute(store, monkeypatch):
    store.put_schedule({"enabled": True, "intervalSeconds": 3600})
    store.put_alerts({"targets": [{"url": "http://a/", "events": ["backup.overdue"]}],
                      "overdueAfterSeconds": 7200})
    reads = []
    listing = store.list_backups
    monkeypatch.setattr(store, "list_backups", lambda: reads.append(1) or listing())
    for _ in range(5):
        worker_alerts.dispatch(store, [].append)
    assert len(reads) == 1
    assert store.redis.ttl("h4:alerts:overdue-checked") == worker_alerts.OVERDUE_CHECK_SECONDS
