"""The Celery messages the store queues are the very ones kombu would publish."""

from __future__ import annotations

import json

import pytest
import redis

from common.celery_app import CONTROL_QUEUE, QUEUE, make_celery, task_message
from common.config import load_settings
from common.tasks import GENERATE_BACKUP, HEALTH_PING


@pytest.fixture
def celery_app(redis_server, tmp_path):
    app = make_celery(load_settings({"H4_DATA_DIR": str(tmp_path),
                                     "H4_REDIS_URL": redis_server.url}))
    yield app
    app.close()


def _comparable(payload: str) -> dict:
    """The envelope without what differs between any two messages: the delivery tag, and
    the expiry instant, which follows the clock."""
    envelope = json.loads(payload)
    assert envelope["properties"].pop("delivery_tag")
    if envelope["headers"]["expires"]:
        envelope["headers"]["expires"] = "set"
    return envelope


@pytest.mark.parametrize("name, queue, args, options", [
    (GENERATE_BACKUP, QUEUE, ["t-1"], {"task_id": "t-1"}),
    (HEALTH_PING, CONTROL_QUEUE, ["nonce"], {"task_id": "p-1", "expires": 5.0}),
])
def test_queued_message_is_the_one_kombu_publishes(celery_app, redis_server, name, queue,
                                                   args, options):
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    celery_app.send_task(name, args=args, **options)
    published = client.rpop(queue)
    ours = task_message(celery_app, name, args, **options)
    assert ours.queue == queue
    assert _comparable(ours.payload) == _comparable(published)
