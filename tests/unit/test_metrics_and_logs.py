import json
import logging

from common import logs
from common.logs import JsonFormatter
from tests.conftest import login


def _sample(text: str, prefix: str) -> float:
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0


def test_metrics_count_requests_and_tasks(client):
    headers = login(client)
    posted = 'h4_http_requests_total{method="POST",route="/backups",status="202"}'
    before = _sample(client.get("/metrics", headers=headers).get_data(as_text=True), posted)
    client.post("/backups", json={}, headers=headers)
    text = client.get("/metrics", headers=headers).get_data(as_text=True)
    assert _sample(text, posted) == before + 1
    assert 'h4_tasks_total{event="started",kind="backup"} 1.0' in text
    assert "h4_tasks_running 1.0" in text and "h4_queue_depth" in text


def test_finished_backup_counts_duration_and_bytes(store):
    from common.tasks import new_backup_task

    row = new_backup_task("admin", "b1", encrypted=False)
    store.create_backup_task(row, "b1", 10, None, 60)
    store.succeed(row.id, {"id": "b1"}, "BackupInfo",
                  backup={"id": "b1", "generatedOn": 1, "hash": "h", "file": "f", "size": 4096})
    figures = store.redis.hgetall("h4:metrics")
    assert figures["backup:succeeded"] == "1" and figures["backup:bytes"] == "4096"
    assert figures["backup:seconds:le:+Inf"] == "1"


def test_log_lines_are_json_with_bound_context():
    record = logging.LogRecord("h4backup.api", logging.INFO, __file__, 1, "hello %s", ("x",),
                               None)
    logs.clear()
    logs.bind(operationID="op-1", taskId="t-1", user="admin")
    line = json.loads(JsonFormatter("api").format(record))
    logs.clear()
    assert (line["msg"], line["operationID"], line["taskId"], line["user"], line["level"]) == (
        "hello x", "op-1", "t-1", "admin", "INFO")
