"""Media type negotiation: every version public vCDA clients send, in Accept and Content-Type."""

from __future__ import annotations

import json

import pytest

from api import media
from api.media import PLAIN_RESPONSE_TYPE, RESPONSE_TYPE, SPOKEN_VERSIONS, vendor_type
from api.schemas import OTHER_VCDA_LOGIN_TYPES
from tests.conftest import ADMIN_PASSWORD, login

LOGIN = {"type": "localUser", "localUser": "admin", "localPassword": ADMIN_PASSWORD}
UNKNOWN_VERSIONS = ("9.9", "5", "4.8", "3.6")


def h4(version: str, charset: bool = False) -> str:
    return f"application/vnd.vmware.h4-v{version}+json" + (";charset=UTF-8" if charset else "")


def _get_session(client, accept: str | None):
    headers = login(client)
    if accept is not None:
        headers["Accept"] = accept
    return client.get("/sessions", headers=headers)


def _login_as(client, content_type: str, data: str | None = None):
    return client.post("/sessions", data=data or json.dumps(LOGIN),
                       headers={"Content-Type": content_type})


# --- Accept ----------------------------------------------------------------------------------

@pytest.mark.parametrize("charset", [False, True])
@pytest.mark.parametrize("version", SPOKEN_VERSIONS)
def test_every_spoken_version_is_answered_in_that_version(client, version, charset):
    response = _get_session(client, h4(version, charset))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == vendor_type(version)


@pytest.mark.parametrize("accept", [None, "", "*/*", "application/*", "text/html"])
def test_no_accept_or_a_wildcard_gets_the_45_type(client, accept):
    response = _get_session(client, accept)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == RESPONSE_TYPE


@pytest.mark.parametrize("accept", ["application/json", "application/json;charset=UTF-8",
                                    "Application/JSON", "application/json, */*"])
def test_plain_json_accept_gets_plain_json(client, accept):
    response = _get_session(client, accept)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == PLAIN_RESPONSE_TYPE


def test_version_names_are_case_insensitive(client):
    response = _get_session(client, "APPLICATION/VND.VMWARE.H4-V4.7+JSON;CHARSET=UTF-8")
    assert response.headers["Content-Type"] == vendor_type("4.7")


@pytest.mark.parametrize("accept, version", [
    (f"{h4('4.0')};q=0.5, {h4('4.7')}", "4.7"),              # the highest quality
    (f"{h4('4.3')}, {h4('4.5')}", "4.3"),                    # the first listed among equals
    (f"application/json, {h4('4.5')};q=0.2", "4.5"),         # an h4 version over plain JSON
    (f"{h4('9.9')}, {h4('4.6')};charset=UTF-8", "4.6"),      # an unknown one is skipped
])
def test_the_picked_version_answers(client, accept, version):
    response = _get_session(client, accept)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == vendor_type(version)


@pytest.mark.parametrize("version", UNKNOWN_VERSIONS)
def test_unknown_version_is_406_the_same_with_or_without_charset(client, version):
    bodies = []
    for charset in (False, True):
        response = _get_session(client, h4(version, charset))
        assert response.status_code == 406
        assert response.headers["Content-Type"] == RESPONSE_TYPE
        bodies.append(response.get_json())
    assert bodies[0] == bodies[1]
    assert bodies[0]["code"] == "NotAcceptable"


def test_the_406_names_every_version_spoken(client):
    body = _get_session(client, h4("9.9")).get_json()
    assert h4("9.9") in body["msg"]
    assert ", ".join(SPOKEN_VERSIONS) in body["msg"]


def test_accept_refusing_everything_is_406(client):
    assert _get_session(client, f"{h4('4.5')};q=0").status_code == 406


def test_errors_are_in_the_negotiated_type(client):
    response = client.get("/tasks/not-a-task", headers={**login(client), "Accept": h4("4.7")})
    assert response.status_code == 404
    assert response.headers["Content-Type"] == vendor_type("4.7")


def test_login_content_type_echoed_as_accept_is_accepted(client):
    for first_accept in (None, "application/json", h4("4.7", charset=True)):
        headers = {} if first_accept is None else {"Accept": first_accept}
        logged_in = client.post("/sessions", json=LOGIN, headers=headers)
        echoed = {"Accept": logged_in.headers["Content-Type"],
                  "X-VCAV-Auth": logged_in.headers["X-VCAV-Auth"]}
        response = client.get("/sessions", headers=echoed)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == logged_in.headers["Content-Type"]


def test_each_accept_is_parsed_once(client):
    headers = {**login(client), "Accept": f"{h4('4.2')}, {h4('4.1')};q=0.9"}
    client.get("/sessions", headers=headers)
    before = media._negotiate_cached.cache_info()
    client.get("/sessions", headers=headers)
    after = media._negotiate_cached.cache_info()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)


# --- Content-Type of request bodies ----------------------------------------------------------

@pytest.mark.parametrize("charset", [False, True])
@pytest.mark.parametrize("version", SPOKEN_VERSIONS)
def test_body_in_every_spoken_version_is_read(client, version, charset):
    assert _login_as(client, h4(version, charset)).status_code == 200


@pytest.mark.parametrize("content_type", [
    "application/json", "application/json;charset=UTF-8", "application/json; charset=utf-8",
    "Application/Vnd.VMware.H4-v4.7+JSON"])
def test_plain_json_bodies_are_read(client, content_type):
    assert _login_as(client, content_type).status_code == 200


def test_pretty_printed_body_is_read(client):
    assert _login_as(client, h4("4.5"), json.dumps(LOGIN, indent=4)).status_code == 200


@pytest.mark.parametrize("charset", [False, True])
@pytest.mark.parametrize("version", UNKNOWN_VERSIONS)
def test_body_in_an_unknown_version_is_415(client, version, charset):
    response = _login_as(client, h4(version, charset))
    assert response.status_code == 415
    assert response.get_json()["code"] == "UnsupportedMediaType"


# --- authentication --------------------------------------------------------------------------

def test_reused_token_after_logout_gets_the_vendor_challenge(client):
    headers = login(client)
    assert client.delete("/sessions", headers=headers).status_code == 204
    response = client.get("/sessions", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Authentication Token Required"
    assert response.get_json()["msg"] == "Authentication required."


@pytest.mark.parametrize("kind", OTHER_VCDA_LOGIN_TYPES)
def test_other_vcda_login_types_are_named_as_such(client, kind):
    response = client.post("/sessions", json={"type": kind})
    assert response.status_code == 400
    assert "(a vCDA login type)" in response.get_json()["msg"]


def test_the_vcda_45_login_types_are_known():
    assert {"vcdCredentials", "vcdCookie", "vcdAccessToken", "ssoCredentials", "ssoToken",
            "ssoUser"} == set(OTHER_VCDA_LOGIN_TYPES)
