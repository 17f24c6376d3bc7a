"""The Celery policy, in one place: the messages the store queues and what workers run with.

Tasks are acknowledged only after they end, and a message whose worker died is redelivered,
so a crash never loses an accepted backup; the per-task lease in the store keeps a redelivered
message from running a task twice at once. Messages are JSON and carry task ids only.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass

from celery import Celery

from common.config import Settings
from common.tasks import ALERT_DELIVER, HEALTH_PING, REAP, REAP_INTERVAL_SECONDS, SCHEDULE_TICK

QUEUE = "h4backup"
# Housekeeping and health pings; every worker consumes it besides the backup queue.
CONTROL_QUEUE = "h4backup.control"
# The longest a backup may run; the broker redelivers an unacknowledged message only after
# a longer visibility timeout, so a slow but living worker is never raced by a second one.
HARD_TIME_LIMIT_SECONDS = 4 * 3600
VISIBILITY_TIMEOUT_SECONDS = HARD_TIME_LIMIT_SECONDS + 3600


def make_celery(settings: Settings, broker_url: str | None = None) -> Celery:
    app = Celery("h4backup", broker=broker_url or settings.redis)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,  # results live in the task rows, not in a result backend
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=HARD_TIME_LIMIT_SECONDS,
        task_soft_time_limit=HARD_TIME_LIMIT_SECONDS - 300,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_SECONDS},
        broker_connection_retry_on_startup=True,
        # However long Redis is away, a worker reconnects (at most 30 s apart, kombu's pace)
        # and consumes again; Celery's default gives up after 100 tries, about 50 minutes.
        broker_connection_max_retries=None,
        # A task whose message can no longer be acknowledged ends (SystemExit in the pool
        # process); its lease expires and the reaper sends it again.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_soft_shutdown_timeout=60.0,
        worker_enable_soft_shutdown_on_idle=False,
        task_default_queue=QUEUE,
        task_routes={name: {"queue": CONTROL_QUEUE}
                     for name in (REAP, HEALTH_PING, SCHEDULE_TICK, ALERT_DELIVER)},
        beat_schedule={
            "reap-lost-tasks": {"task": REAP, "schedule": REAP_INTERVAL_SECONDS,
                                "options": {"expires": REAP_INTERVAL_SECONDS * 2}},
            # Beat only ticks; the schedule itself lives in the store and can change at any time.
            "scheduled-backups": {"task": SCHEDULE_TICK, "schedule": 1.0,
                                  "options": {"expires": 1.0}},
        },
        # No task-sent event (the store queues task messages itself, see task_message; only
        # beat publishes through kombu): Flower learns each task from the worker's
        # received/started/succeeded events.
        task_send_sent_event=False,
        worker_send_task_events=True,
        worker_hijack_root_logger=False,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0.2,
                                   "interval_step": 0.5, "interval_max": 1},
    )
    return app


@dataclass(frozen=True)
class TaskMessage:
    """A Celery task message as kombu's Redis transport stores it, ready to be pushed."""

    queue: str  # the Redis list the workers consuming that queue pop from
    payload: str  # the envelope, JSON


def run_message(app: Celery, name: str, task_id: str) -> TaskMessage:
    """The message that runs one of the service's tasks: the task id is its only argument and
    its Celery id too, so Flower and the API show the same id."""
    return task_message(app, name, [task_id], task_id=task_id)


def task_message(app: Celery, name: str, args: list[str], task_id: str | None = None,
                 expires: float | None = None) -> TaskMessage:
    """The message `app.send_task(name, args, task_id=...)` would publish, built in memory.

    The store pushes it in the same script that writes the task row, so a task is accepted
    together with its message or not at all, in one round trip and with no broker
    connection of kombu's on the API's request path. The envelope is kombu's Redis
    transport format (priority 0, the default exchange, routed by queue name); Celery's own
    `as_task_v2` builds the task protocol headers and body inside it.
    """
    task_id = task_id or str(uuid.uuid4())
    queue = app.amqp.router.route({}, name, args, {})["queue"].name
    # The args are ids: their plain repr is what Celery's slower saferepr would give.
    task = app.amqp.as_task_v2(task_id, name, args=args, expires=expires,
                               reply_to=app.thread_oid, ignore_result=None,
                               argsrepr=repr(args), kwargsrepr="{}")
    body = base64.b64encode(json.dumps(task.body).encode()).decode()
    properties = {**task.properties, "delivery_mode": 2,
                  "delivery_info": {"exchange": "", "routing_key": queue},
                  "priority": 0, "body_encoding": "base64", "delivery_tag": str(uuid.uuid4())}
    if expires is not None:  # the broker-side time to live kombu adds, in milliseconds
        properties["expiration"] = str(int(expires * 1000))
    envelope = {"body": body, "content-encoding": "utf-8", "content-type": "application/json",
                "headers": task.headers, "properties": properties}
    return TaskMessage(queue, json.dumps(envelope))
