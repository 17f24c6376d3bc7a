"""/diagnostics: what this service is (AboutInfo), and its health as vCDA reports it.

vCDA 4.5 answers `GET /diagnostics/health` with a task whose result is a CloudHealthInfo; newer
clients `POST` the same. Clients read the task once, two seconds after the 202 (Ansible), or
poll it (Terraform), so the check runs before the 202 and the task is written already ended.
The check is api.health's (Redis, and a worker answering a ping), from its cache when fresh.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
from flask import g, request
from flask.views import MethodView

from api.auth import current_caller, login_required
from api.backups import location
from api.blueprint import Blueprint
from api.health import PING_DEADLINE_SECONDS
from api.health import check as check_health
from api.media import API_VERSION
from api.schemas import AboutInfoSchema, ApiTaskSchema
from api.services import app_services
from common import tasks
from common.clock import now_ms
from common.errors import DatabaseUnavailable, HealthCheckFailed, WorkerUnavailable
from common.states import TaskState
from common.tasks import TaskRow

log = logging.getLogger("h4backup.api")

blp = Blueprint("diagnostics", __name__, url_prefix="/diagnostics",
                description="What this service is, and its health (vCDA diagnostics).")

PRODUCT_NAME = "h4backup"
SERVICE_TYPE = "CLOUD"  # clients branch on it: a cloud site, not an on-premises appliance
SERVICE_BOOT_MS = now_ms()
LOCATION_HEADER = {"Location": {"description": "The task, to poll.",
                                "schema": {"type": "string", "format": "uri"}}}


@functools.cache
def project_version() -> str:
    try:
        return importlib.metadata.version(PRODUCT_NAME)
    except importlib.metadata.PackageNotFoundError:
        return "0"


def build_version() -> str:
    """`4.5.0-h4backup.<version>`: clients compare it with vCDA versions, as text too."""
    return f"{API_VERSION}.0-{PRODUCT_NAME}.{project_version()}"


@functools.cache
def build_date_ms() -> int:
    """When this installation was built: its package metadata's time, else the service's start."""
    try:
        distribution = importlib.metadata.distribution(PRODUCT_NAME)
        metadata = next(f for f in distribution.files or () if f.name == "METADATA")
        return int(Path(distribution.locate_file(metadata)).stat().st_mtime * 1000)
    except (importlib.metadata.PackageNotFoundError, StopIteration, OSError):
        return SERVICE_BOOT_MS


_runtime_ids: dict[int, str] = {}


def runtime_id() -> str:
    """This process's id; a forked API worker gets its own."""
    return _runtime_ids.setdefault(os.getpid(), str(uuid.uuid4()))


@functools.cache
def host_boot_ms() -> int:
    """When the host booted (`btime` of /proc/stat), else when this service started."""
    try:
        with open("/proc/stat") as stat:
            for line in stat:
                if line.startswith("btime "):
                    return int(line.split()[1]) * 1000
    except (OSError, ValueError, IndexError):
        pass
    return SERVICE_BOOT_MS


def disk_usage(folder: Path) -> dict[str, int]:
    """Bytes of the filesystem that holds `folder` (or would, before it is made)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        fs = os.statvfs(folder)
    except OSError:
        return {"free": 0, "total": 0, "usable": 0}
    return {"free": fs.f_bfree * fs.f_frsize, "total": fs.f_blocks * fs.f_frsize,
            "usable": fs.f_bavail * fs.f_frsize}


def about_info() -> dict[str, Any]:
    return {"buildDate": build_date_ms(), "buildVersion": build_version(),
            "instanceId": app_services().store.instance_id(),
            "productName": PRODUCT_NAME, "serviceType": SERVICE_TYPE}


def _findings(check: dict) -> dict[str, dict | None]:
    """The health check's answer as CloudHealthInfo's errors; a finding absent is null."""
    redis_state, workers = check["redis"], check["workers"]
    db = None if redis_state["ok"] else DatabaseUnavailable(
        redis_state.get("error") or "no answer").to_api_error()
    manager = None if workers["ok"] else WorkerUnavailable(
        workers.get("error") or f"none within {PING_DEADLINE_SECONDS:g} s").to_api_error()
    return {"lsError": None, "dbError": db, "ntpError": None, "vcdError": None,
            "managerError": manager}


def cloud_health_info(services, about: dict[str, Any]) -> dict[str, Any]:
    """CloudHealthInfo: the fields vCDA clients read."""
    check = services.health.get(lambda: check_health(services))
    return {
        **{name: about[name] for name in ("productName", "buildVersion", "buildDate",
                                          "instanceId")},
        "runtimeId": runtime_id(), "currentTime": now_ms(),
        "address": urlsplit(request.host_url).hostname or "",
        "serviceBootTimestamp": SERVICE_BOOT_MS, "applianceBootTimestamp": host_boot_ms(),
        "diskUsage": disk_usage(services.storage.local_folder() or services.settings.data_dir),
        **_findings(check),
    }


def _ended(task: TaskRow, result: dict | None, error: dict | None) -> TaskRow:
    now = now_ms()
    return replace(task, state=TaskState.FAILED if error else TaskState.SUCCEEDED,
                   end_time=now, last_updated=now, result=result, error=error,
                   result_type=None if error else "CloudHealthInfo",
                   progress=0 if error else 100)


def run_health_check():
    """Check now (or reuse a check of the last seconds), record it as an ended task: 202."""
    services = app_services()
    about = about_info()
    task = tasks.new_task(current_caller().user, "health", SERVICE_TYPE, about["instanceId"],
                          services.settings.site_name, g.get("operation_id"))
    try:
        task = _ended(task, cloud_health_info(services, about), None)
    except redis.RedisError:
        raise  # nothing can be recorded: 503, as every call while Redis is away
    except Exception as exc:
        log.exception("the health check failed")
        task = _ended(task, None, HealthCheckFailed(type(exc).__name__).to_api_error())
    services.store.record_finished_task(task)
    return task, 202, location(task.id)


@blp.route("/about")
class About(MethodView):
    @blp.doc(security=[{}, {"X-VCAV-Auth": []}])
    @blp.response(200, AboutInfoSchema)
    def get(self):
        """AboutInfo: product, build and this installation's id. It reveals nothing that needs
        protecting, so it answers with or without a session."""
        return about_info()


@blp.route("/health")
class Health(MethodView):
    @login_required
    @blp.response(202, ApiTaskSchema, headers=LOCATION_HEADER)
    def get(self):
        """Check health: 202 with the task, already ended; its result is a CloudHealthInfo
        whose dbError and managerError say what does not answer."""
        return run_health_check()

    @login_required
    @blp.response(202, ApiTaskSchema, headers=LOCATION_HEADER)
    def post(self):
        """The same check, as newer clients ask for it."""
        return run_health_check()
