"""GET /metrics in the Prometheus text format, for a scraper with the token or an administrator.

Prometheus sends `Authorization: Bearer <H4_METRICS_TOKEN>` (`authorization:` in its scrape
config); an administrator's X-VCAV-Auth session works too. Anyone else gets a 401 ApiError:
the figures tell an attacker when backups run and how large they are.

Request counts and latencies are kept per API process (prometheus_client's multiprocess mode
under gunicorn, where PROMETHEUS_MULTIPROC_DIR is set); task figures come from Redis, where
every API and worker process adds to them, together with the queue depth and running tasks.
"""

from __future__ import annotations

import hmac
import os
import time

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from api.auth import current_caller
from api.services import app_services
from common.celery_app import QUEUE
from common.errors import NotAuthenticated
from common.store import metrics as task_metrics

blp = Blueprint("metrics", __name__)

REQUESTS = Counter("h4_http_requests_total", "HTTP requests by route, method and status.",
                   ["route", "method", "status"])
LATENCY = Histogram("h4_http_request_duration_seconds", "HTTP request latency by route.",
                    ["route", "method"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


class TaskCollector:
    """Task figures from Redis, read at scrape time."""

    def __init__(self, store) -> None:
        self.store = store

    def collect(self):
        figures = self.store.task_figures()
        yield _task_counters(figures)
        yield _duration_histogram(figures)
        archived = CounterMetricFamily("h4_backup_archived_bytes", "Bytes of backups stored.")
        archived.add_metric([], figures.get("backup:bytes", 0))
        yield archived
        yield _gauge("h4_queue_depth", "Tasks waiting in the queue.",
                     self.store.queue_depth(QUEUE))
        yield _gauge("h4_tasks_running", "Tasks accepted and not yet ended.",
                     len(self.store.running_task_ids()))


def _task_counters(figures: dict[str, float]):
    family = CounterMetricFamily("h4_tasks", "Tasks by kind and outcome.", labels=["kind", "event"])
    for name, value in sorted(figures.items()):
        kind, _, event = name.partition(":")
        if event in ("started", "succeeded", "failed"):
            family.add_metric([kind, event], value)
    return family


def _duration_histogram(figures: dict[str, float]):
    family = HistogramMetricFamily("h4_backup_duration_seconds", "How long backups took.")
    buckets = [(str(float(b)), figures.get(f"backup:seconds:le:{b}", 0))
               for b in task_metrics.DURATION_BUCKETS]
    buckets.append(("+Inf", figures.get("backup:seconds:le:+Inf", 0)))
    family.add_metric([], buckets, sum_value=figures.get("backup:seconds:sum", 0))
    return family


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, documentation)
    gauge.add_metric([], value)
    return gauge


def instrument(app: Flask) -> None:
    @app.before_request
    def _start_clock() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule else "unmatched"
        elapsed = time.perf_counter() - g.get("request_started", time.perf_counter())
        REQUESTS.labels(route, request.method, str(response.status_code)).inc()
        LATENCY.labels(route, request.method).observe(elapsed)
        return response


def _scraper_allowed() -> bool:
    token = app_services().settings.metrics_token
    offered = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(offered.encode(), f"Bearer {token}".encode()):
        return True
    try:
        return current_caller().is_admin
    except NotAuthenticated:
        return False


@blp.route("/metrics")
def metrics() -> Response:
    if not _scraper_allowed():
        raise NotAuthenticated(msg="Metrics need the bearer token (H4_METRICS_TOKEN) or an "
                                   "administrator's session.")
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REQUESTS)
        registry.register(LATENCY)
    registry.register(TaskCollector(app_services().store))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST.split(";")[0],
                    headers={"Content-Type": CONTENT_TYPE_LATEST})
