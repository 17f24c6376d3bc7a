"""/tasks: the state of long-running operations."""

from __future__ import annotations

import uuid

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth import current_caller, login_required
from api.media import RESPONSE_TYPE
from api.schemas import ApiTaskSchema
from common.errors import TaskNotFound

blp = Blueprint("tasks", __name__, url_prefix="/tasks", description="Long-running operations.")


def visible_task(task_id: str) -> dict:
    """The task if the caller may see it; another user's task is as good as missing."""
    caller = current_caller()
    task = current_app.extensions["h4"].store.get_task(task_id)
    if task is None or not (caller.is_admin or task["user"] == caller.user):
        raise TaskNotFound(task_id)
    return task


@blp.route("/<uuid:task_id>")
class Task(MethodView):
    @login_required
    @blp.response(200, ApiTaskSchema, content_type=RESPONSE_TYPE)
    def get(self, task_id: uuid.UUID):
        """One task."""
        return visible_task(str(task_id))
