"""GET/PUT /backups/config: the schedule of backups, their retention and their recipients;
GET /backups/config/retention-preview: what retention would delete now, and why the rest stays;
GET/PUT /backups/checks: the schedule of integrity checks."""

from __future__ import annotations

from flask.views import MethodView

from api.auth import admin_required
from api.blueprint import Blueprint
from api.media import RESPONSE_TYPE
from api.schemas import CheckScheduleSchema, RetentionPreviewSchema, ScheduleSchema
from api.services import app_services
from common.retention import Policy, decide, is_locked

blp = Blueprint("schedule", __name__, url_prefix="/backups",
                description="Scheduled backups and retention (beyond vCDA 4.5).")

CHECKS_DISABLED = {"enabled": False, "intervalSeconds": None, "cron": None, "full": False}
DISABLED = {"enabled": False, "intervalSeconds": None, "cron": None, "keep": 7,
            "keepLast": 7, "timeZone": "UTC", "recipients": []}


def _shown(config: dict) -> dict:
    """A schedule as clients read it: `keep` and `keepLast` always agree, for the clients
    that know only `keep`."""
    policy = Policy.from_schedule(config)
    last = policy.counts.get("keepLast")
    return {**config, "keep": last or None, "keepLast": last or 0, "timeZone": policy.zone}


@blp.route("/config")
class ScheduleConfig(MethodView):
    @admin_required
    @blp.response(200, ScheduleSchema, content_type=RESPONSE_TYPE)
    def get(self):
        """The schedule; disabled until one is set."""
        return _shown(app_services().store.get_schedule() or DISABLED)

    @admin_required
    @blp.arguments(ScheduleSchema)
    @blp.response(200, ScheduleSchema, content_type=RESPONSE_TYPE)
    def put(self, config: dict):
        """Set the schedule: an interval or a cron expression, the keep rules (`keepLast`,
        `keepHourly` ... `keepYearly` in `timeZone`, as `restic forget --keep-*`), and the
        age public keys scheduled backups are encrypted to (no password is stored)."""
        app_services().store.put_schedule(config)
        return _shown(config)


@blp.route("/config/retention-preview")
class RetentionPreview(MethodView):
    @admin_required
    @blp.response(200, RetentionPreviewSchema, content_type=RESPONSE_TYPE)
    def get(self):
        """What retention would delete if it ran now, and every rule that keeps each of the
        others. Deletes nothing. Manual, imported and locked backups are never deleted."""
        services = app_services()
        policy = Policy.from_schedule(services.store.get_schedule() or DISABLED)
        decisions = decide(services.store.list_backups(), policy,
                           lambda backup: is_locked(services.storage, backup))
        return {"keepRules": dict(policy.counts), "timeZone": policy.zone,
                "keep": [d.document() for d in decisions if d.keep],
                "delete": [d.document() for d in decisions if not d.keep]}


@blp.route("/checks")
class CheckSchedule(MethodView):
    @admin_required
    @blp.response(200, CheckScheduleSchema, content_type=RESPONSE_TYPE)
    def get(self):
        """The schedule of integrity checks; disabled until one is set."""
        return app_services().store.get_check_schedule() or CHECKS_DISABLED

    @admin_required
    @blp.arguments(CheckScheduleSchema)
    @blp.response(200, CheckScheduleSchema, content_type=RESPONSE_TYPE)
    def put(self, config: dict):
        """Set when every listed backup is verified: a `verify` task each, run as the
        scheduler. A failed one ends FAILED (an alert's `task.failed`) and marks the backup
        `integrity: damaged` in GET /backups."""
        app_services().store.put_check_schedule(config)
        return config
