"""/alerts: webhook targets of task events, their delivery log, and a test event (beyond
vCDA 4.5; `common/alerts.py` says how deliveries are made and signed)."""

from __future__ import annotations

from flask.views import MethodView

from api.auth import admin_required
from api.blueprint import Blueprint
from api.media import RESPONSE_TYPE
from api.schemas import (
    AlertConfigSchema,
    AlertDeliverySchema,
    AlertLogQuerySchema,
    AlertTestSchema,
)
from api.services import app_services
from common.alerts import TEST_EVENT
from common.errors import Conflict

blp = Blueprint("alerts", __name__, url_prefix="/alerts",
                description="Webhook alerts of task events (beyond vCDA 4.5).")


@blp.route("/config")
class AlertConfig(MethodView):
    @admin_required
    @blp.response(200, AlertConfigSchema, content_type=RESPONSE_TYPE)
    def get(self):
        """The webhook targets; none until set."""
        return app_services().store.get_alerts() or {"targets": []}

    @admin_required
    @blp.arguments(AlertConfigSchema)
    @blp.response(200, AlertConfigSchema, content_type=RESPONSE_TYPE)
    def put(self, config: dict):
        """Set the targets: each gets the events it names (`task.failed`, `task.succeeded`)
        as a signed JSON POST, retried with growing pauses while it is away. No targets
        turns alerts off."""
        app_services().store.put_alerts(config)
        return config


@blp.route("/deliveries")
class AlertDeliveries(MethodView):
    @admin_required
    @blp.arguments(AlertLogQuerySchema, location="query")
    @blp.response(200, AlertDeliverySchema(many=True), content_type=RESPONSE_TYPE)
    def get(self, query: dict):
        """The latest delivery attempts, newest first (the last 500 are kept)."""
        return app_services().store.delivery_log(query["limit"])


@blp.route("/test")
class AlertTest(MethodView):
    @admin_required
    @blp.response(202, AlertTestSchema, content_type=RESPONSE_TYPE)
    def post(self):
        """Send a `test` event to every target; its deliveries show in the log."""
        store = app_services().store
        config = store.get_alerts()
        if not config:
            raise Conflict("No alert target is configured.")
        store.add_alert_event(TEST_EVENT, "-")
        return {"targets": len(config["targets"])}
