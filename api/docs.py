"""The interactive API page's assets, served from the swagger-ui-bundle package: no CDN, so the
page works on a host with no way out to the internet."""

from __future__ import annotations

from flask import Blueprint, send_from_directory
from swagger_ui_bundle import swagger_ui_path

assets = Blueprint("api_docs_assets", __name__)


@assets.route("/api-docs/assets/<path:name>")
def asset(name: str):
    return send_from_directory(swagger_ui_path, name, max_age=3600)
