"""Request and response shapes of the vCDA 4.5 backup API; they also declare the OpenAPI document.

Request schemas refuse unknown fields (no mass assignment: what gets backed up is server
configuration, never chosen by the caller).
"""

from __future__ import annotations

import re

import marshmallow as ma
from marshmallow import fields, validate

from common.alerts import EVENTS as ALERT_EVENTS
from common.alerts import MAX_TARGETS as MAX_ALERT_TARGETS
from common.kinds import BACKUP, KINDS, ResultField, TaskKind
from common.retention import time_zone
from common.schedules import parse_cron
from common.tasks import TaskRow


class StrictSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE


class ApiErrorSchema(ma.Schema):
    args = fields.List(fields.String(), metadata={"description": "Positional arguments."})
    code = fields.String(metadata={"description": "Specific error code."})
    msg = fields.String(metadata={"description": "Detailed error message."})
    stacktrace = fields.String(metadata={"description": "Exception stacktrace (debug mode only)."})


LOGIN_TYPES = ("localUser",)
# Types a vCDA 4.5 appliance knows that need a Cloud Director or SSO behind them; ssoUser is
# not one of them, but some clients send it.
OTHER_VCDA_LOGIN_TYPES = ("vcdCredentials", "vcdCookie", "vcdAccessToken", "ssoCredentials",
                          "ssoToken", "ssoUser")


class SessionRequestSchema(StrictSchema):
    type = fields.String(required=True, validate=validate.OneOf(LOGIN_TYPES),
                         metadata={"description": "Only local users are supported."})

    @ma.pre_load
    def _supported_type(self, data, **_kwargs):
        """One clear answer for another login type, before its own fields are refused."""
        kind = data.get("type") if isinstance(data, dict) else None
        if isinstance(kind, str) and kind not in LOGIN_TYPES:
            known = " (a vCDA login type)" if kind in OTHER_VCDA_LOGIN_TYPES else ""
            raise ma.ValidationError(
                f"login type {kind[:64]!r}{known} is not supported; this service supports: "
                f"{', '.join(LOGIN_TYPES)}", field_name="type")
        return data

    localUser = fields.String(required=True, validate=validate.Length(1, 256))
    localPassword = fields.String(required=True, validate=validate.Length(0, 1024),
                                  load_only=True)


class AuthenticatedSiteSchema(ma.Schema):
    org = fields.String()
    site = fields.String()


class SessionDetailsSchema(ma.Schema):
    """C4SessionDetails."""

    user = fields.String()
    roles = fields.List(fields.String())
    authenticatedSites = fields.List(fields.Nested(AuthenticatedSiteSchema))


def _recipient(text: str) -> bool:
    from common.backupfile.format.age import is_recipient

    return is_recipient(text)


def _identity(text: str) -> bool:
    from common.backupfile.format.age import is_identity

    return is_identity(text)


LABEL_KEY = r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,62}$"
MAX_LABELS, MAX_LABEL_VALUE = 32, 256


class NewBackupRequestSchema(StrictSchema):
    password = fields.String(
        load_default=None, allow_none=True,
        metadata={"description": "The password for the generated backup (age passphrase). "
                                 "Without one, the backup is stored unencrypted."})
    recipients = fields.List(
        fields.String(), validate=validate.Length(1, 20), load_default=None,
        metadata={"description": "Extension: age X25519 public keys (`age1...`) to encrypt "
                                 "to, instead of a password."})
    labels = fields.Dict(
        keys=fields.String(validate=validate.Regexp(LABEL_KEY)),
        values=fields.String(validate=validate.Length(0, MAX_LABEL_VALUE)),
        load_default=None, validate=validate.Length(max=MAX_LABELS),
        metadata={"description": f"Extension: free-form labels, at most {MAX_LABELS} "
                                 f"`name: value` strings (names `{LABEL_KEY}`), kept in the "
                                 "backup's record and listing; `GET /backups?label=name=value` "
                                 "finds them."})

    @ma.validates_schema
    def _one_way_to_encrypt(self, data: dict, **_kwargs) -> None:
        _check_recipients(data.get("recipients"))
        if data.get("password") and data.get("recipients"):
            raise ma.ValidationError("give a password or recipients, not both", "recipients")


def _check_recipients(recipients: list[str] | None, field: str = "recipients") -> None:
    bad = [r for r in recipients or () if not _recipient(r)]
    if bad:
        raise ma.ValidationError(f"not an age X25519 public key: {bad[0][:80]}", field)


class OpenBackupRequestSchema(StrictSchema):
    """How to open an encrypted backup: its password, or the identity of a recipient."""

    password = fields.String(load_default=None, allow_none=True,
                             validate=validate.Length(1, 1024), load_only=True)
    identity = fields.String(load_default=None, allow_none=True,
                             validate=validate.Length(1, 256), load_only=True,
                             metadata={"description": "An age identity `AGE-SECRET-KEY-1...`."})

    @ma.validates_schema
    def _one_key(self, data: dict, **_kwargs) -> None:
        if data.get("password") and data.get("identity"):
            raise ma.ValidationError("give a password or an identity, not both", "identity")
        if data.get("identity") and not _identity(data["identity"]):
            raise ma.ValidationError("not an age X25519 identity", "identity")


class RekeyRequestSchema(OpenBackupRequestSchema):
    """The key that opens the backup now (`password` or `identity`), and the one that is to
    open it afterwards: `newPassword` or `newRecipients`."""

    newPassword = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(1, 1024), load_only=True,
        metadata={"description": "The passphrase that opens the backup afterwards."})
    newRecipients = fields.List(
        fields.String(), validate=validate.Length(1, 20), load_default=None,
        metadata={"description": "age X25519 public keys (`age1...`) that open the backup "
                                 "afterwards, instead of a passphrase."})

    @ma.validates_schema
    def _one_new_key(self, data: dict, **_kwargs) -> None:
        _check_recipients(data.get("newRecipients"), "newRecipients")
        if bool(data.get("newPassword")) == bool(data.get("newRecipients")):
            raise ma.ValidationError("give newPassword or newRecipients (one of them)",
                                     "newPassword")


def _label_filter(text: str) -> None:
    name, equals, _value = text.partition("=")
    if not equals or not re.match(LABEL_KEY, name):
        raise ma.ValidationError("give label=name=value")


class BackupListQuerySchema(StrictSchema):
    label = fields.List(fields.String(validate=[validate.Length(1, 320), _label_filter]),
                        load_default=list, validate=validate.Length(max=MAX_LABELS),
                        metadata={"description": "Extension: only backups with this label, "
                                                 "`name=value`; repeat it and all must match."})


class ImportQuerySchema(StrictSchema):
    hash = fields.String(load_default=None, validate=validate.Regexp(
        r"^SHA-512:([0-9A-F]{2}:){63}[0-9A-F]{2}$"),
        metadata={"description": "Expected SHA-512, `SHA-512:AB:CD:...`; checked before the "
                                 "backup is listed."})


def _keep_rule(period: str) -> fields.Integer:
    return fields.Integer(allow_none=True, validate=validate.Range(0, 10000), metadata={
        "description": f"Keep the newest scheduled backup of each of the last N {period} "
                       "that hold one (restic's --keep-* semantics)."})


class _TimedSchema(StrictSchema):
    """When something runs: every intervalSeconds, or at a cron expression."""

    enabled = fields.Boolean(load_default=True)
    intervalSeconds = fields.Integer(allow_none=True, load_default=None,
                                     validate=validate.Range(1, 366 * 24 * 3600))
    cron = fields.String(allow_none=True, load_default=None, validate=validate.Length(1, 100),
                         metadata={"description": "`minute hour day month weekday`, UTC."})


class ScheduleSchema(_TimedSchema):
    """When scheduled backups run, which are kept, and whom they are encrypted to."""

    keep = fields.Integer(allow_none=True, validate=validate.Range(1, 10000), metadata={
        "description": "The same as keepLast, which it predates."})
    keepLast = fields.Integer(allow_none=True, validate=validate.Range(0, 10000), metadata={
        "description": "Keep the N newest scheduled backups. Without any keep rule: 7."})
    keepHourly = _keep_rule("hours")
    keepDaily = _keep_rule("days")
    keepWeekly = _keep_rule("ISO weeks")
    keepMonthly = _keep_rule("months")
    keepYearly = _keep_rule("years")
    timeZone = fields.String(load_default="UTC", validate=validate.Length(1, 64), metadata={
        "description": "The IANA time zone that hours, days, weeks, months and years of the "
                       "keep rules are counted in."})
    recipients = fields.List(fields.String(), load_default=list,
                             validate=validate.Length(0, 20))

    @ma.validates_schema
    def _one_schedule(self, data: dict, **_kwargs) -> None:
        _check_recipients(data.get("recipients"))
        _check_keep_rules(data)
        _check_timing(data)


class CheckScheduleSchema(_TimedSchema):
    """When every listed backup is verified, and whether its files are read too."""

    full = fields.Boolean(load_default=False, metadata={
        "description": "Also decrypt and read every file of the backups that the age "
                       "identity in H4_CHECK_IDENTITY_FILE (on the host running beat) opens; "
                       "the others, and every backup without it, get the SHA-512 check."})

    @ma.validates_schema
    def _one_schedule(self, data: dict, **_kwargs) -> None:
        # Turned off, it needs no timing.
        if data.get("enabled") or data.get("intervalSeconds") or data.get("cron"):
            _check_timing(data)


def _check_timing(data: dict) -> None:
    if bool(data.get("intervalSeconds")) == bool(data.get("cron")):
        raise ma.ValidationError("give either intervalSeconds or cron", "cron")
    if data.get("cron"):
        try:
            parse_cron(data["cron"])
        except (ValueError, KeyError, IndexError) as exc:
            raise ma.ValidationError(str(exc) or "malformed cron", "cron") from None


def _check_keep_rules(data: dict) -> None:
    if data.get("keep") and data.get("keepLast") not in (None, data["keep"]):
        raise ma.ValidationError("keep and keepLast are the same rule: give one", "keep")
    try:
        time_zone(data.get("timeZone") or "UTC")
    except ValueError as exc:
        raise ma.ValidationError(str(exc), "timeZone") from None


class RetentionDecisionSchema(ma.Schema):
    id = fields.String()
    generatedOn = fields.Integer()
    kind = fields.String(metadata={"description": "scheduled, manual or imported"})
    reasons = fields.List(fields.String(), metadata={
        "description": "Why it is kept (every rule that keeps it); empty when deleted."})


class RetentionPreviewSchema(ma.Schema):
    """What retention would do now with the schedule's rules; it deletes nothing."""

    keepRules = fields.Dict(keys=fields.String(), values=fields.Integer())
    timeZone = fields.String()
    keep = fields.List(fields.Nested(RetentionDecisionSchema))
    delete = fields.List(fields.Nested(RetentionDecisionSchema))


# --- task results, from the table of kinds (common/kinds.py) -----------------------------

def _labels_field(**kwargs) -> fields.Dict:
    return fields.Dict(keys=fields.String(), values=fields.String(), **kwargs)


def _strings_field(**kwargs) -> fields.List:
    return fields.List(fields.String(), **kwargs)


_FIELD_CLASSES = {"string": fields.String, "uuid": fields.UUID, "integer": fields.Integer,
                  "boolean": fields.Boolean, "labels": _labels_field, "strings": _strings_field}


def _result_field(field: ResultField) -> fields.Field:
    return _FIELD_CLASSES[field.type](allow_none=field.nullable,
                                      metadata={"description": field.description})


def result_schema(kind: TaskKind) -> type[ma.Schema]:
    """A kind's result as the API documents it, built from the table so that this schema and
    the CLI's view say the same. Named `<resultType>Schema`: an OpenAPI component made from
    it is named after the resultType (BackupInfo, as GET /backups lists it)."""
    return ma.Schema.from_dict({field.name: _result_field(field) for field in kind.result},
                               name=f"{kind.result_type}Schema")


# One schema per resultType a worker kind ends with. BackupInfo is also each row of
# GET /backups: vCDA has one BackupInfo type for both.
RESULT_SCHEMAS: dict[str, type[ma.Schema]] = {kind.result_type: result_schema(kind)
                                              for kind in KINDS.values()}
BackupInfoSchema = RESULT_SCHEMAS[BACKUP.result_type]
# Not a worker's result: GET/POST /diagnostics/health answer with an already ended task.
OTHER_RESULT_TYPES = ("CloudHealthInfo",)


def _result_description() -> str:
    """ApiTask.result's description: every result type, with its fields where the table
    has them, so the document says what a client may find there."""
    types = [f"{kind.result_type} {{{', '.join(field.name for field in kind.result)}}}"
             for kind in KINDS.values()] + [f"{name} (from /diagnostics/health)"
                                            for name in OTHER_RESULT_TYPES]
    return ("Set when SUCCEEDED, of the type named by resultType: "
            f"{', '.join(types[:-1])} or {types[-1]}.")


class WorkflowInfoSchema(ma.Schema):
    type = fields.String()
    resourceType = fields.String()
    resourceId = fields.String()
    resourceName = fields.String()


class ApiTaskSchema(ma.Schema):
    """ApiTask: a long-running operation; `result` holds e.g. a BackupInfo once SUCCEEDED."""

    endTime = fields.Integer(metadata={"description": "Completion time in ms; -1 while running."})
    error = fields.Nested(ApiErrorSchema, allow_none=True)
    id = fields.UUID()
    lastUpdated = fields.Integer()
    progress = fields.Integer(validate=validate.Range(0, 100))
    result = fields.Dict(allow_none=True, metadata={"description": _result_description()})
    resultType = fields.String(allow_none=True)
    startTime = fields.Integer()
    state = fields.String(validate=validate.OneOf(["RUNNING", "SUCCEEDED", "FAILED"]))
    user = fields.String()
    warnings = fields.List(fields.Nested(ApiErrorSchema))
    workflowInfo = fields.Nested(WorkflowInfoSchema)

    @ma.pre_dump
    def _as_document(self, task, **_kwargs):
        """Views answer with the TaskRow they read; its ApiTask document is what is shown (a
        row's own fields, such as attempts or backupId, never are). None stays None."""
        return task.document() if isinstance(task, TaskRow) else task


class CookieSchema(ma.Schema):
    cookie = fields.String(metadata={"description": "Use once, within a minute."})


class CookieQuerySchema(StrictSchema):
    cookie = fields.String(required=True, validate=validate.Length(1, 256))


TASK_SORT_FIELDS = ("startTime", "endTime", "lastUpdated", "progress", "state", "user")


class TaskListQuerySchema(StrictSchema):
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0))
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 100))
    ids = fields.String(metadata={"description": "Comma-separated task ids."})
    user = fields.String(metadata={"description": "Administrators only."})
    state = fields.String(validate=validate.OneOf(["RUNNING", "SUCCEEDED", "FAILED"]))
    startTimeBefore = fields.Integer()
    startTimeAfter = fields.Integer()
    endTimeBefore = fields.Integer()
    endTimeAfter = fields.Integer()
    type = fields.String(metadata={"description": "workflowInfo.type, e.g. backup."})
    resourceId = fields.String()
    operationID = fields.String(metadata={"description": "The operationID header the task "
                                                        "was asked for with."})
    site = fields.String(metadata={"description": "The local site's name matches every task, "
                                                 "any other name none."})
    sort = fields.String(
        load_default="-startTime",
        validate=validate.OneOf([f"{sign}{name}" for name in TASK_SORT_FIELDS
                                 for sign in ("", "+", "-")]),
        metadata={"description": "A field, `-` before it for descending order."})


class HealthSchema(ma.Schema):
    status = fields.String(metadata={"description": "`ok` or `unavailable`."})
    redis = fields.Dict()
    workers = fields.Dict()


class TaskListSchema(ma.Schema):
    items = fields.List(fields.Nested(ApiTaskSchema))
    total = fields.Integer()


class AboutInfoSchema(ma.Schema):
    """AboutInfo: what this service is."""

    buildDate = fields.Integer(metadata={"description": "When this installation was built, ms."})
    buildVersion = fields.String(metadata={"description": "`4.5.0-h4backup.<version>`."})
    instanceId = fields.String(metadata={"description": "Stable for this installation."})
    productName = fields.String()
    serviceType = fields.String(metadata={"description": "Always `CLOUD`."})


class SiteStateSchema(ma.Schema):
    incomingCommError = fields.Nested(ApiErrorSchema, allow_none=True)
    outgoingCommError = fields.Nested(ApiErrorSchema, allow_none=True)


class SiteSchema(ma.Schema):
    """A vCDA site; this service is one local site."""

    site = fields.String()
    description = fields.String()
    apiUrl = fields.String()
    apiPublicUrl = fields.String()
    apiThumbprint = fields.String(allow_none=True)
    apiVersion = fields.String()
    buildVersion = fields.String()
    isLocal = fields.Boolean()
    state = fields.Nested(SiteStateSchema)


# --- alerts ---------------------------------------------------------------------------------

class AlertTargetSchema(StrictSchema):
    url = fields.Url(required=True, schemes={"http", "https"}, require_tld=False,
                     validate=validate.Length(max=2048),
                     metadata={"description": "Where each event is POSTed, signed."})
    events = fields.List(fields.String(validate=validate.OneOf(ALERT_EVENTS)),
                         load_default=lambda: ["task.failed"],
                         validate=validate.Length(1, len(ALERT_EVENTS)),
                         metadata={"description": "Which events this target gets."})


class AlertConfigSchema(StrictSchema):
    """Webhook targets of task events; none turns alerts off."""

    targets = fields.List(fields.Nested(AlertTargetSchema), load_default=list,
                          validate=validate.Length(max=MAX_ALERT_TARGETS))
    overdueAfterSeconds = fields.Integer(
        allow_none=True, load_default=None, validate=validate.Range(60, 366 * 24 * 3600),
        metadata={"description": "Send `backup.overdue` once when the schedule is on and no "
                                 "scheduled backup has been listed for this long."})


class AlertDeliverySchema(ma.Schema):
    id = fields.String(metadata={"description": "The delivery's id (X-H4-Delivery)."})
    event = fields.String()
    url = fields.String()
    attempt = fields.Integer()
    delivered = fields.Boolean()
    outcome = fields.String(metadata={"description": "The HTTP status, or why none came."})
    at = fields.Integer(metadata={"description": "When, ms since the epoch."})
    final = fields.Boolean(metadata={"description": "No further attempt follows."})


class AlertLogQuerySchema(StrictSchema):
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 500))


class AlertTestSchema(ma.Schema):
    targets = fields.Integer(metadata={"description": "Targets the test event goes to."})
