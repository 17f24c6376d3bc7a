"""GET/PUT /backups/config: the schedule of backups, their retention and their recipients."""

from __future__ import annotations

from flask.views import MethodView

from api.auth import admin_required
from api.blueprint import Blueprint
from api.media import RESPONSE_TYPE
from api.schemas import ScheduleSchema
from api.services import app_services

blp = Blueprint("schedule", __name__, url_prefix="/backups",
                description="Scheduled backups and retention (beyond vCDA 4.5).")

DISABLED = {"enabled": False, "intervalSeconds": None, "cron": None, "keep": 7,
            "recipients": []}


@blp.route("/config")
class ScheduleConfig(MethodView):
    @admin_required
    @blp.response(200, ScheduleSchema, content_type=RESPONSE_TYPE)
    def get(self):
        """The schedule; disabled until one is set."""
        return app_services().store.get_schedule() or DISABLED

    @admin_required
    @blp.arguments(ScheduleSchema)
    @blp.response(200, ScheduleSchema, content_type=RESPONSE_TYPE)
    def put(self, config: dict):
        """Set the schedule: an interval or a cron expression, how many to keep, and the age
        public keys scheduled backups are encrypted to (no password is stored)."""
        app_services().store.put_schedule(config)
        return config
