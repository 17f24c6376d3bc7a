"""flask-smorest blueprints that answer (and document) invalid input as vCDA does: 400."""

from __future__ import annotations

from flask_smorest import Blueprint as SmorestBlueprint
from marshmallow import Schema
from webargs.flaskparser import FlaskParser


class _Parser(FlaskParser):
    DEFAULT_VALIDATION_STATUS = 400


class Blueprint(SmorestBlueprint):
    ARGUMENTS_PARSER = _Parser()

    def arguments(self, schema, *args, **kwargs):
        # One schema object per route, made here: given a class, webargs would build a new
        # one for every request. Loading keeps no state on the schema, so it is shared.
        if isinstance(schema, type) and issubclass(schema, Schema):
            schema = schema()
        return super().arguments(schema, *args, **kwargs)
