"""`h4backup worker` and `h4backup beat` start Celery's services without Celery's command line,
whose imports (its shell, and every plugin installed beside it, such as Flower) each pool
process would otherwise inherit and keep resident."""

import json
import os
import subprocess
import sys
from pathlib import Path

from common.celery_app import CONTROL_QUEUE, QUEUE

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import json, sys
from unittest import mock
import cli.main
from worker.app import celery

started = {}

class FakeService:
    exitcode = 0
    def __init__(self, **options):
        started.update(options)
    def start(self):
        started["started"] = True
    run = start

with mock.patch.object(celery, "Worker", FakeService), \\
        mock.patch.object(celery, "Beat", FakeService):
    code = cli.main.main(sys.argv[1:])
started["exit"] = code
started["command line loaded"] = sorted(
    name for name in sys.modules
    if name.startswith(("celery.bin", "flower", "click_repl", "prompt_toolkit")))
print(json.dumps(started))
"""


def _run(tmp_path: Path, *argv: str) -> dict:
    env = {**os.environ, "H4_DATA_DIR": str(tmp_path / "data"),
           "H4_REDIS_URL": "redis://127.0.0.1:1/0", "H4_LOG_LEVEL": "WARNING"}
    done = subprocess.run([sys.executable, "-c", _PROBE, *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_the_worker_starts_with_its_queues_and_options_and_without_celerys_command_line(
        tmp_path: Path) -> None:
    started = _run(tmp_path, "worker", "--concurrency", "3", "--name", "w1@%h")
    assert started["started"] and started["exit"] == 0
    assert started["queues"] == [QUEUE, CONTROL_QUEUE]
    assert started["concurrency"] == 3
    assert started["hostname"].startswith("w1@") and "%" not in started["hostname"]
    assert started["without_gossip"] and started["without_mingle"] and started["quiet"]
    assert started["command line loaded"] == []


def test_beat_starts_with_its_schedule_file_and_without_celerys_command_line(
        tmp_path: Path) -> None:
    started = _run(tmp_path, "beat")
    assert started["started"] and started["exit"] == 0
    assert started["schedule"] == str(tmp_path / "data" / "beat-schedule")
    assert started["quiet"]
    assert started["command line loaded"] == []
