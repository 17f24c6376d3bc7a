"""/tasks: the state of long-running operations, one or a filtered page of them."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from flask import g
from flask.views import MethodView

from api.auth import (
    Caller,
    admin_required,
    caller_and_document,
    caller_and_task,
    current_caller,
    login_required,
)
from api.blueprint import Blueprint
from api.media import RESPONSE_TYPE, document_response
from api.schemas import ApiTaskSchema, TaskListQuerySchema, TaskListSchema
from api.services import app_services
from common.errors import Conflict, Forbidden, TaskCanceled, TaskNotFound
from common.tasks import TaskRow

blp = Blueprint("tasks", __name__, url_prefix="/tasks", description="Long-running operations.")

# Queries filter and sort by the ApiTask's names; the row's attributes are snake_case.
_ATTRIBUTES = {"state": "state", "type": "type", "resourceId": "resource_id",
               "operationID": "operation_id", "startTime": "start_time", "endTime": "end_time",
               "lastUpdated": "last_updated", "progress": "progress", "user": "user"}


def _value(task: TaskRow, name: str) -> Any:
    return getattr(task, _ATTRIBUTES[name])


def visible_task(task_id: str) -> TaskRow:
    """The task if the caller may see it; another user's task is as good as missing."""
    caller, task = caller_and_task(task_id)
    _refuse_unseen(task_id, caller, task and task.user)
    return task


def _refuse_unseen(task_id: str, caller: Caller, owner: str | None) -> None:
    """TaskNotFound unless the task exists and the caller may see it (its own, or any for an
    administrator)."""
    if owner is None or not (caller.is_admin or owner == caller.user):
        raise TaskNotFound(task_id)


def _whose_tasks(query: dict[str, Any]) -> str | None:
    """Administrators see everyone's tasks (or one user's); others only their own."""
    caller = current_caller()
    wanted = query.get("user")
    if caller.is_admin:
        return wanted
    if wanted not in (None, caller.user):
        raise Forbidden()
    return caller.user


def _filters(query: dict[str, Any]) -> list[Callable[[TaskRow], bool]]:
    checks: list[Callable[[TaskRow], bool]] = []
    if "site" in query and query["site"] != app_services().settings.site_name:
        checks.append(lambda _t: False)  # every task runs on the one local site
    if "ids" in query:
        ids = {part.strip() for part in query["ids"].split(",") if part.strip()}
        checks.append(lambda t: t.id in ids)
    for name in ("state", "type", "resourceId", "operationID"):
        if name in query:
            checks.append(lambda t, n=name, v=query[name]: _value(t, n) == v)
    for name, field, before in (("startTimeBefore", "startTime", True),
                                ("startTimeAfter", "startTime", False),
                                ("endTimeBefore", "endTime", True),
                                ("endTimeAfter", "endTime", False)):
        if name in query:
            checks.append(_time_check(field, query[name], before))
    return checks


def _time_check(field: str, limit: int, before: bool) -> Callable[[TaskRow], bool]:
    if before:
        # A running task has no end time yet (-1): it has not ended before anything.
        return lambda t: 0 <= _value(t, field) < limit
    return lambda t: _value(t, field) > limit


def _sorted(items: list[TaskRow], sort: str) -> list[TaskRow]:
    field = sort.lstrip("+-")
    return sorted(items, key=lambda t: (_value(t, field), t.id), reverse=sort.startswith("-"))


@blp.route("")
class Tasks(MethodView):
    @login_required
    @blp.arguments(TaskListQuerySchema, location="query")
    @blp.response(200, TaskListSchema, content_type=RESPONSE_TYPE)
    def get(self, query: dict[str, Any]):
        """Tasks, filtered and paged: `{items, total}`."""
        rows = app_services().store.list_tasks(_whose_tasks(query))
        checks = _filters(query)
        matching = _sorted([t for t in rows if all(check(t) for check in checks)], query["sort"])
        page = matching[query["offset"]:query["offset"] + query["limit"]]
        return {"items": page, "total": len(matching)}


@blp.route("/<uuid:task_id>")
class Task(MethodView):
    # No login_required: the session is checked and the task's ready document read in one
    # round trip, the call clients make most.
    @blp.response(200, ApiTaskSchema, content_type=RESPONSE_TYPE)
    def get(self, task_id: uuid.UUID):
        """One task."""
        if "caller" in g:
            return visible_task(str(task_id))
        caller, task = caller_and_document(str(task_id))
        _refuse_unseen(str(task_id), caller, task and task.user)
        if task.document is None:  # a row another version's writer changed last
            return task.row
        return document_response(task.document, 200, {})


@blp.route("/<uuid:task_id>/cancel")
class TaskCancel(MethodView):
    @admin_required
    @blp.response(202, ApiTaskSchema, content_type=RESPONSE_TYPE)
    def post(self, task_id: uuid.UUID):
        """Cancel a running task: it ends FAILED `TaskCanceled`, its partial files removed.
        A task that has already ended is a 409."""
        task = visible_task(str(task_id))
        store = app_services().store
        if store.request_cancel(task.id, TaskCanceled().to_api_error()) == "final":
            raise Conflict(f"Task {task.id} has already ended.")
        return store.get_task(task.id)
