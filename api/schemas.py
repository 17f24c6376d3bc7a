"""Request and response shapes of the vCDA 4.5 backup API; they also declare the OpenAPI document.

Request schemas refuse unknown fields (no mass assignment: what gets backed up is server
configuration, never chosen by the caller).
"""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate


class StrictSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE


class ApiErrorSchema(ma.Schema):
    args = fields.List(fields.String(), metadata={"description": "Positional arguments."})
    code = fields.String(metadata={"description": "Specific error code."})
    msg = fields.String(metadata={"description": "Detailed error message."})
    stacktrace = fields.String(metadata={"description": "Exception stacktrace (debug mode only)."})


class SessionRequestSchema(StrictSchema):
    type = fields.String(required=True, validate=validate.OneOf(["localUser"]),
                         metadata={"description": "Only local users are supported."})
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


class NewBackupRequestSchema(StrictSchema):
    password = fields.String(
        load_default=None, allow_none=True,
        metadata={"description": "The password for the generated backup (age passphrase). "
                                 "Without one, the backup is stored unencrypted."})


class BackupInfoSchema(ma.Schema):
    id = fields.UUID(metadata={"description": "The backup's id."})
    generatedOn = fields.Integer(metadata={"description": "Creation time, ms since the epoch."})
    hash = fields.String(metadata={"description": "SHA-512 of the stored file, "
                                                  "`SHA-512:AB:CD:...`."})


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
    result = fields.Dict(allow_none=True, metadata={"description": "BackupInfo when SUCCEEDED."})
    resultType = fields.String(allow_none=True)
    startTime = fields.Integer()
    state = fields.String(validate=validate.OneOf(["RUNNING", "SUCCEEDED", "FAILED"]))
    user = fields.String()
    warnings = fields.List(fields.Nested(ApiErrorSchema))
    workflowInfo = fields.Nested(WorkflowInfoSchema)


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
    operationID = fields.String()
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
