"""/sites: the vCDA sites this service knows, which is only itself (H4_SITE_NAME)."""

from __future__ import annotations

from typing import Any

from flask import request
from flask.views import MethodView

from api.auth import login_required
from api.blueprint import Blueprint
from api.diagnostics import build_version
from api.media import API_VERSION
from api.schemas import SiteSchema
from api.services import app_services
from common.errors import SiteNotFound

blp = Blueprint("sites", __name__, url_prefix="/sites", description="The local site.")


def local_site() -> dict[str, Any]:
    """The one site. Its URL is the one the caller used: https once TLS is on, or behind
    H4_PROXY_HOPS trusted proxies that say so."""
    url = request.host_url.rstrip("/")
    return {"site": app_services().settings.site_name, "description": "",
            "apiUrl": url, "apiPublicUrl": url, "apiThumbprint": None,
            "apiVersion": API_VERSION, "buildVersion": build_version(), "isLocal": True,
            "state": {"incomingCommError": None, "outgoingCommError": None}}


@blp.route("")
class Sites(MethodView):
    @login_required
    @blp.response(200, SiteSchema(many=True))
    def get(self):
        """Every site: a plain list holding the local one."""
        return [local_site()]


@blp.route("/<string:site>")
class Site(MethodView):
    @login_required
    @blp.response(200, SiteSchema)
    def get(self, site: str):
        """One site by name; only the local one exists."""
        if site != app_services().settings.site_name:
            raise SiteNotFound(site[:128])
        return local_site()
