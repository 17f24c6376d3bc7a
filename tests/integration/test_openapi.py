"""The OpenAPI document of the running API: valid, complete, browsable offline, and true.

"True" is checked by schemathesis: it generates requests from the document, sends them to the
running API with an administrator's token, and reports every response the document does not
describe (status, media type, headers, body) and every server error.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from urllib.parse import urljoin

import pytest
import requests
from openapi_spec_validator import validate

pytestmark = pytest.mark.integration

# Part A of the contract: every operation a vCDA 4.5 client calls.
PART_A = {("/sessions", "get"), ("/sessions", "post"), ("/sessions", "delete"),
          ("/backups", "get"), ("/backups", "post"),
          ("/backups/{}", "get"), ("/backups/{}", "post"), ("/backups/{}", "delete"),
          ("/backups/cookie/{}", "get"), ("/backups/cookie/{}", "post"),
          ("/tasks", "get"), ("/tasks/{}", "get")}
# What vCDA clients call around it: right after login, to check health, to find the site.
VCDA_CLIENT_CALLS = {("/diagnostics/about", "get"), ("/diagnostics/health", "get"),
                     ("/diagnostics/health", "post"), ("/sites", "get"), ("/sites/{}", "get")}

# Schemathesis failure codes, grouped by the check that reports them.
SERVER_ERRORS = {"ST101", "ST102"}
UNDOCUMENTED_STATUS = {"ST103"}
UNDOCUMENTED_CONTENT_TYPE = {"ST104", "ST105", "ST106"}
UNDOCUMENTED_HEADERS = {"ST107"}
SCHEMA_VIOLATIONS = {"ST108", "ST109", "ST110", "ST111"}
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance")
MAX_EXAMPLES = 25
SEED = 4545


# About the HTTP surface, not where backups are kept: the folder only, so CI time does not double.
@pytest.fixture(scope="module")
def backend():
    return "folder"


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory):
    """Replaces the shared tree for this module: generated requests start many backups, and
    small ones keep the workers from slowing the API down under test."""
    root = tmp_path_factory.mktemp("openapi-source") / "tree"
    root.mkdir()
    (root / "settings.conf").write_text("site = openapi\n")
    (root / "keystore.bin").write_bytes(bytes(range(256)) * 16)
    return root


@pytest.fixture(scope="module")
def document(service):
    response = requests.get(f"{service.url}/openapi.json", timeout=30)
    assert response.status_code == 200, response.text[:300]
    return response.json()


def test_openapi_document_is_valid(document):
    validate(document)


def _described(document: dict) -> set[tuple[str, str]]:
    return {(re.sub(r"\{[^}]+\}", "{}", path), method)
            for path, operations in document["paths"].items() for method in operations
            if method in {"get", "post", "put", "delete", "patch"}}


def test_openapi_document_describes_every_part_a_operation(document):
    assert PART_A - _described(document) == set()


def test_openapi_document_describes_what_vcda_clients_call_besides(document):
    assert VCDA_CLIENT_CALLS - _described(document) == set()


def test_about_is_documented_as_open_to_anyone(document):
    assert {} in document["paths"]["/diagnostics/about"]["get"]["security"]


def test_health_task_documents_its_location(document):
    for method in ("get", "post"):
        accepted = document["paths"]["/diagnostics/health"][method]["responses"]["202"]
        assert "Location" in accepted["headers"]


class _AssetParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.styles: list[str] = []

    def handle_starttag(self, tag, attrs):
        found = dict(attrs)
        if tag == "script" and found.get("src"):
            self.scripts.append(found["src"])
        if tag == "link" and "stylesheet" in (found.get("rel") or "") and found.get("href"):
            self.styles.append(found["href"])


@pytest.fixture(scope="module")
def docs_page(service):
    response = requests.get(f"{service.url}/api-docs", timeout=30)
    assert response.status_code == 200, response.text[:300]
    parser = _AssetParser()
    parser.feed(response.text)
    return {"response": response, "scripts": parser.scripts, "styles": parser.styles}


def test_api_docs_is_an_html_page_with_scripts_and_styles(docs_page):
    assert docs_page["response"].headers["Content-Type"].startswith("text/html")
    assert docs_page["scripts"] and docs_page["styles"]


def test_api_docs_loads_nothing_from_another_host(docs_page):
    outside = [url for url in docs_page["scripts"] + docs_page["styles"]
               if re.match(r"^(?:[a-z][a-z0-9+.-]*:)?//", url, re.IGNORECASE)]
    assert outside == []


def test_api_docs_assets_are_served(service, docs_page):
    base = f"{service.url}/api-docs"
    for url in docs_page["scripts"] + docs_page["styles"]:
        response = requests.get(urljoin(base, url), timeout=30)
        assert response.status_code == 200 and response.content, url


# --- schemathesis against the running API ----------------------------------------------------

def _require_schemathesis() -> None:
    if importlib.util.find_spec("schemathesis") is None:
        message = "schemathesis is not installed (pip install the test extra)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def schemathesis_run(service, tmp_path_factory):
    """One bounded, seeded schemathesis run; each test below reads one kind of finding."""
    _require_schemathesis()
    token = service.login().headers["X-VCAV-Auth"]
    folder = tmp_path_factory.mktemp("schemathesis")
    report = folder / "report.json"
    command = [sys.executable, "-m", "schemathesis.cli", "run", f"{service.url}/openapi.json",
               "--header", f"X-VCAV-Auth: {token}",
               "--checks", ",".join(CHECKS),
               # Logging out would end the token every other generated request relies on.
               "--exclude-name", "DELETE /sessions",
               "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
               "--generation-database", "none", "--continue-on-failure",
               "--workers", "1", "--request-timeout", "30", "--no-color",
               "--report", "json", "--report-json-path", str(report)]
    # The folder is empty, so no schemathesis.toml of the machine changes the run.
    run = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=240,
                         env={**os.environ, "NO_COLOR": "1"})
    (folder / "output.txt").write_text(run.stdout + run.stderr)
    assert report.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    return {"report": json.loads(report.read_text()), "output": run.stdout}


def _findings(run: dict, codes: set[str]) -> list[dict]:
    return [failure for failure in run["report"]["failures"] if failure["code"] in codes]


def _explain(run: dict, findings: list[dict]) -> str:
    """The schemathesis output for these findings: each case with its curl reproduction."""
    titles = {failure["title"] for failure in findings}
    sections = re.split(r"\n(?=_{3,} .+ _{3,}\n)", run["output"])
    shown = [s for s in sections if any(title in s for title in titles)]
    return "\n".join(shown)[-12000:] or run["output"][-6000:]


def _assert_none(run: dict, codes: set[str]) -> None:
    findings = _findings(run, codes)
    assert findings == [], _explain(run, findings)


def test_schemathesis_tested_every_operation_without_errors(schemathesis_run, document):
    report = schemathesis_run["report"]
    assert report["complete"] and report["errors"] == [], schemathesis_run["output"][-6000:]
    operations = sum(1 for item in document["paths"].values() for m in item
                     if m in {"get", "post", "put", "delete", "patch"})
    assert report["operations"]["tested"] == operations - 1  # all but DELETE /sessions


def test_no_generated_request_causes_a_server_error(schemathesis_run):
    _assert_none(schemathesis_run, SERVER_ERRORS)


def test_every_response_status_is_documented(schemathesis_run):
    _assert_none(schemathesis_run, UNDOCUMENTED_STATUS)


def test_every_response_content_type_is_documented(schemathesis_run):
    _assert_none(schemathesis_run, UNDOCUMENTED_CONTENT_TYPE)


def test_every_documented_response_header_is_sent(schemathesis_run):
    _assert_none(schemathesis_run, UNDOCUMENTED_HEADERS)


def test_every_response_body_matches_its_schema(schemathesis_run):
    _assert_none(schemathesis_run, SCHEMA_VIOLATIONS)
