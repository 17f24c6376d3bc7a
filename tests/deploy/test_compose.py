"""docker-compose.yml, the Dockerfile and docker/ checked without a Docker engine.

The compose file is validated twice: by Compose itself (`docker compose config -q`, or the
Debian package docker-compose's `docker-compose config -q`; neither needs an engine), and
against the Compose Specification JSON schema (tests/deploy/compose-spec.json, the official
schema of the compose-spec project). Then the deployment policy: Redis persists, never evicts
and is not published; every secret comes from a file; workers scale; beat runs once; Flower
asks for credentials.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from tests.deploy import (
    APP_SERVICES,
    COMPOSE_FILE,
    DOCKERIGNORE,
    REPO,
    SCRIPTS,
    SECRETS_EXAMPLE,
    compose,
    dockerfile_instructions,
    dockerfile_json,
    final_stage,
    image_env,
    load_script,
    raw_compose,
)

SCHEMA = Path(__file__).with_name("compose-spec.json")
SECRET_WORDS = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|AUTH|KEY|CREDENTIAL", re.I)
DEBIAN_PACKAGE = "docker-compose"


# --- helpers -----------------------------------------------------------------------------------

def parse_duration(text: str) -> float:
    """Compose durations: 90s, 1m30s, 1h, 500ms."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", str(text))
    assert parts and "".join(n + u for n, u in parts) == str(text), f"bad duration {text!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def published_ports(service: dict) -> list[tuple[str, str, int]]:
    """(host address, published port, container port) for short and long port syntax."""
    ports = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.append((port.get("host_ip", ""), str(port.get("published", "")),
                          int(port["target"])))
            continue
        spec = str(port).split("/")[0]
        host, _colon, target = spec.rpartition(":")
        address, _colon, published = host.rpartition(":")
        ports.append((address, published, int(target)))
    return ports


def command_text(service: dict) -> str:
    parts = []
    for key in ("entrypoint", "command"):
        value = service.get(key) or []
        parts.extend(shlex.split(value) if isinstance(value, str) else value)
    return " ".join(parts)


def healthcheck_text(service: dict) -> str:
    test = service.get("healthcheck", {}).get("test", [])
    return test if isinstance(test, str) else " ".join(test)


def volume_targets(service: dict) -> dict[str, str]:
    """Container path -> source (named volume or host path) for short and long syntax."""
    targets = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            targets[volume["target"]] = volume.get("source", "")
        else:
            source, _colon, rest = str(volume).partition(":")
            targets[rest.split(":")[0]] = source
    return targets


def compose_cli() -> list[str] | None:
    """Compose v2 as a docker plugin, else a docker-compose program (Debian: docker-compose)."""
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=60)
        if probe.returncode == 0:
            return [docker, "compose"]
    program = shutil.which("docker-compose")
    return [program] if program else None


def clean_env() -> dict[str, str]:
    """No setting of this machine may change what the compose file means in the test."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("H4_", "FLOWER_", "COMPOSE_"))}


@pytest.fixture(scope="module")
def spec() -> dict:
    return compose()


@pytest.fixture(scope="module")
def services(spec) -> dict:
    return spec["services"]


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of the project's deployment files, with the example secrets as ./secrets."""
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yml")
    shutil.copytree(SECRETS_EXAMPLE, tmp_path / "secrets")
    return tmp_path


# --- the file is valid Compose -----------------------------------------------------------------

def test_compose_itself_accepts_the_file_without_an_engine(project):
    cli = compose_cli()
    if cli is None:
        message = (f"no Compose program: install the Debian package {DEBIAN_PACKAGE} "
                   "(or the docker compose plugin)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)

    def config(name: str, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([*cli, "-f", name, "config", *extra], cwd=project, env=clean_env(),
                              capture_output=True, text=True, timeout=120)

    checked = config("docker-compose.yml", "-q")
    assert checked.returncode == 0, checked.stderr
    # What Compose makes of it, merge keys and defaults resolved.
    model = yaml.safe_load(config("docker-compose.yml").stdout)
    assert set(model["services"]) == {"redis", *APP_SERVICES}
    assert "ports" not in model["services"]["redis"]
    assert parse_duration(model["services"]["worker"]["stop_grace_period"]) > 60
    assert model["services"]["beat"]["deploy"]["replicas"] == 1
    assert {target for _a, _p, target in published_ports(model["services"]["api"])} == {8046}
    assert {target for _a, _p, target in published_ports(model["services"]["flower"])} == {5555}
    # ... and it does refuse a broken file, so the check above means something.
    broken = (project / "docker-compose.yml").read_text().replace(
        "stop_grace_period: 90s", "stop_grace_perod: 90s")
    (project / "broken.yml").write_text(broken)
    refused = config("broken.yml", "-q")
    assert refused.returncode != 0 and "stop_grace_perod" in refused.stderr


def test_compose_file_matches_the_compose_specification_schema(spec):
    schema = json.loads(SCHEMA.read_text())
    assert schema["title"] == "Compose Specification"
    validator = jsonschema.Draft202012Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(spec)]
    assert not errors, "\n".join(errors)
    assert "version" not in raw_compose(), "the compose spec has no version: key"
    broken = copy.deepcopy(spec)
    broken["services"]["worker"]["stop_grace_perod"] = "90s"
    assert list(validator.iter_errors(broken)), "the schema must refuse an unknown key"


# --- Redis ---------------------------------------------------------------------------------------

def test_redis_persists_never_evicts_asks_a_password_and_is_not_published(spec, services):
    redis = services["redis"]
    assert redis["image"].split(":")[0] == "redis" and redis["image"].split(":")[1].startswith("7")
    command = command_text(redis)
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert '--requirepass "$(cat /run/secrets/redis_password)"' in command
    assert "redis_password" in redis["secrets"]
    assert "ports" not in redis, "Redis is reached on the project network only"
    source = volume_targets(redis)["/data"]
    assert source in spec["volumes"], "Redis keeps its AOF in a named volume"
    health = healthcheck_text(redis)
    assert "redis-cli" in health and "ping" in health and "/run/secrets/redis_password" in health
    assert " -a " not in health, "the password goes through REDISCLI_AUTH, not the command line"


def test_every_service_that_uses_redis_builds_its_url_from_the_secret(spec, services):
    assert set(services) == {"redis", *APP_SERVICES}
    entrypoint = dockerfile_json("ENTRYPOINT")
    assert entrypoint[0] == "h4-entrypoint"
    for name in APP_SERVICES:
        service = services[name]
        env = service["environment"]
        url = urlsplit(env["H4_REDIS_URL"])
        assert url.scheme == "redis" and url.hostname == "redis" and url.port == 6379, name
        assert url.password is None and "@" not in url.netloc, f"{name}: no password in the URL"
        assert env["H4_REDIS_PASSWORD_FILE"] == "/run/secrets/redis_password", name
        assert "redis_password" in service["secrets"], name
        assert (service.get("entrypoint") or entrypoint)[0] == "h4-entrypoint", name
        assert service["depends_on"]["redis"]["condition"] == "service_healthy", name


def test_no_secret_is_written_in_the_compose_file(spec, services):
    text = COMPOSE_FILE.read_text()
    assert not re.search(r"rediss?://[^/\s\"']*@", text), "no credentials inside a URL"
    assert "--basic-auth" not in text and "FLOWER_BASIC_AUTH:" not in text
    assert "env_file" not in text
    for name, service in services.items():
        assert "env_file" not in service, name
        for key, value in service.get("environment", {}).items():
            if SECRET_WORDS.search(key):
                assert key.endswith("_FILE"), f"{name}: {key} must name a file, not hold a value"
                assert value.startswith("/run/secrets/"), f"{name}: {key}={value}"
                assert Path(value).name in service["secrets"], f"{name}: {key} needs its secret"
        for given in re.findall(r"--requirepass\s+(\"[^\"]*\"|\S+)", command_text(service)):
            assert given.startswith('"$(cat /run/secrets/'), f"{name}: requirepass from a file"
    for secret, source in spec["secrets"].items():
        assert source == {"file": f"./secrets/{secret}.txt"}, secret
        example = SECRETS_EXAMPLE / f"{secret}.txt"
        assert example.read_text().startswith("CHANGE-ME"), f"{example} is a placeholder"
    used = {secret for service in services.values() for secret in service.get("secrets", [])}
    assert used == set(spec["secrets"]), "every secret declared is used and the other way round"


# --- API, workers, beat, Flower -------------------------------------------------------------------

def test_api_is_published_on_8046_and_shares_the_backup_folder_with_the_workers(services):
    api, worker = services["api"], services["worker"]
    assert api["command"] in ("api", ["api"])
    assert {target for _a, _p, target in published_ports(api)} == {8046}
    env = api["environment"]
    assert env["H4_ADMIN_PASSWORD_FILE"] == "/run/secrets/admin_password"
    assert env["H4_TRANSIT_KEY_FILE"] == worker["environment"]["H4_TRANSIT_KEY_FILE"]
    image = image_env()
    for folder in (image["H4_BACKUP_DIR"], image["H4_RESTORE_DIR"], image["H4_DATA_DIR"]):
        assert volume_targets(api)[folder] == volume_targets(worker)[folder], folder
    assert "api" in healthcheck_text(api) and "h4-healthcheck" in healthcheck_text(api)


def test_workers_scale_and_stop_after_their_soft_shutdown(services, tmp_path):
    from common.celery_app import make_celery
    from common.config import load_settings

    worker = services["worker"]
    for fixed in ("container_name", "hostname", "ports"):
        assert fixed not in worker, f"worker must not set {fixed}: `--scale worker=N`"
    command = worker["command"]
    assert command[0] == "worker"
    name = command[command.index("--name") + 1]
    assert "%h" in name, "each replica is its own Celery node, named after its container"
    celery = make_celery(load_settings({"H4_DATA_DIR": str(tmp_path)}))
    assert celery.conf.worker_prefetch_multiplier == 1
    # Flower learns every task from the workers' events; the API sends no task-sent event.
    assert celery.conf.worker_send_task_events
    soft = celery.conf.worker_soft_shutdown_timeout
    assert parse_duration(worker["stop_grace_period"]) > max(soft, 60)
    assert worker["stop_signal"] == "SIGTERM"
    assert volume_targets(worker)["/sources"].endswith("sources")
    assert any(v.endswith(":ro") for v in worker["volumes"] if isinstance(v, str))


def test_beat_runs_exactly_once(services):
    beat = services["beat"]
    assert beat["command"] in ("beat", ["beat"])
    assert beat["deploy"]["replicas"] == 1
    assert "scale" not in beat and "ports" not in beat


def test_flower_asks_for_credentials_from_a_secret(services):
    flower = services["flower"]
    argv = [*flower["entrypoint"], *flower["command"]]
    assert argv[:5] == ["h4-entrypoint", "celery", "--app", "worker.app", "flower"]
    assert "--port=5555" in argv
    assert not any(arg.startswith("--basic-auth") or arg.startswith("--basic_auth")
                   for arg in argv), "credentials never on the command line"
    assert flower["environment"]["H4_FLOWER_BASIC_AUTH_FILE"] == "/run/secrets/flower_auth"
    assert "flower_auth" in flower["secrets"]
    assert {target for _a, _p, target in published_ports(flower)} == {5555}


def test_published_ports_default_to_the_loopback_address(services):
    for name in ("api", "flower"):
        for address, published, _target in published_ports(services[name]):
            assert address == "127.0.0.1" and published, name


# --- Dockerfile and .dockerignore ---------------------------------------------------------------

def _dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""

    def regex(pattern: str) -> re.Pattern:
        out = ""
        for token in re.findall(r"\*\*/?|\*|\?|\[[^\]]*\]|[^*?\[]+", pattern.strip("/")):
            out += {"*": "[^/]*", "?": "[^/]"}.get(token, "(.*/)?" if token == "**/" else
                                                      ".*" if token == "**" else
                                                      token if token.startswith("[") else
                                                      re.escape(token))
        return re.compile(out + r"\Z")

    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = regex(line.lstrip("!"))
        if any(pattern.match(prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


def test_dockerfile_builds_one_non_root_image_from_the_lock():
    instructions = dockerfile_instructions()
    args = dict(rest.split("=", 1) for word, rest in instructions if word == "ARG" and "=" in rest)
    bases = [rest.split()[0].replace("${PYTHON_IMAGE}", args.get("PYTHON_IMAGE", ""))
             for word, rest in instructions if word == "FROM"]
    assert bases and all(base == "python:3.12-slim" for base in bases)
    runs = " ".join(rest for word, rest in instructions if word == "RUN")
    assert "pip install -c constraints.txt ." in runs
    assert not re.search(r"apt-get install", runs), "the service calls no outside program"
    users = [rest for word, rest in final_stage() if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    volumes = json.loads(next(rest for word, rest in final_stage() if word == "VOLUME"))
    assert set(volumes) == {"/var/lib/h4backup", "/backups", "/restores"}
    assert dockerfile_json("ENTRYPOINT") == ["h4-entrypoint", "h4backup"]
    assert dockerfile_json("CMD") == ["api"]
    assert dockerfile_json("HEALTHCHECK") == ["h4-entrypoint", "h4-healthcheck"]
    env = image_env()
    assert env["H4_HOST"] == "0.0.0.0" and env["H4_PORT"] == "8046"
    assert "8046" in next(rest for word, rest in final_stage() if word == "EXPOSE").split()


def test_dockerignore_sends_what_the_dockerfile_copies_and_no_secret():
    for word, rest in dockerfile_instructions():
        if word != "COPY" or "--from=" in rest:
            continue
        sources = [arg for arg in rest.split() if not arg.startswith("--")][:-1]
        for source in sources:
            assert (REPO / source).exists(), source
            assert not _dockerignore_excludes(source), f".dockerignore drops {source}"
    for private in ("secrets/redis_password.txt", ".venv/bin/python", ".git/config",
                    "h4data/admin-password", "tests/deploy/test_compose.py",
                    "api/__pycache__/x.pyc"):
        assert _dockerignore_excludes(private), private


# --- docker/entrypoint.py ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def entrypoint():
    return load_script("entrypoint")


def test_entrypoint_puts_the_password_into_the_redis_url(entrypoint, tmp_path):
    import redis
    from kombu.utils.url import url_to_parts

    password = "p@ss:w/rd?#%+ 1"
    secret = tmp_path / "redis_password"
    secret.write_text(password + "\n")
    env = entrypoint.secret_environment({"H4_REDIS_URL": "redis://127.0.0.1:6390/0",
                                         "H4_REDIS_PASSWORD_FILE": str(secret), "KEEP": "1"})
    assert "H4_REDIS_PASSWORD_FILE" not in env and env["KEEP"] == "1"
    url = env["H4_REDIS_URL"]
    assert url.startswith("redis://:") and url.endswith("@127.0.0.1:6390/0")
    assert url_to_parts(url).password == password  # what Celery (kombu) reads
    pool = redis.Redis.from_url(url).connection_pool  # what the store reads
    assert pool.connection_kwargs["password"] == password
    assert pool.connection_kwargs["port"] == 6390
    assert entrypoint.redis_url_with_password("redis://127.0.0.1:7/0", "PASSWORD") == \
        "redis://:PASSWORD@127.0.0.1:7/0"
    assert entrypoint.redis_url_with_password("rediss://app@redis:6379/1", "x") == \
        "rediss://app:x@redis:6379/1"


def test_entrypoint_builds_flower_basic_auth(entrypoint, tmp_path):
    auth = tmp_path / "flower_auth"
    auth.write_text("# operators\nadmin:one-Secret\n\nops:two-Secret\n")
    env = entrypoint.secret_environment({"H4_FLOWER_BASIC_AUTH_FILE": str(auth)})
    assert env == {"FLOWER_BASIC_AUTH": "admin:one-Secret,ops:two-Secret"}


@pytest.mark.parametrize("content", ["no-colon-here", "admin:", "admin:with,comma-Secret", ""])
def test_entrypoint_refuses_a_bad_flower_secret_without_showing_it(entrypoint, tmp_path, content):
    auth = tmp_path / "flower_auth"
    auth.write_text(content)
    with pytest.raises(entrypoint.SecretError) as caught:
        entrypoint.secret_environment({"H4_FLOWER_BASIC_AUTH_FILE": str(auth)})
    assert "H4_FLOWER_BASIC_AUTH_FILE" in str(caught.value)
    assert "Secret" not in str(caught.value)


def test_entrypoint_refuses_missing_settings_and_double_passwords(entrypoint, tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("Hidden-1")
    cases = [
        {"H4_REDIS_PASSWORD_FILE": str(secret)},  # no URL
        {"H4_REDIS_PASSWORD_FILE": str(secret), "H4_REDIS_URL": "redis://:old@redis:6379/0"},
        {"H4_REDIS_PASSWORD_FILE": str(secret), "H4_REDIS_URL": "unix:///run/redis.sock"},
        {"H4_REDIS_PASSWORD_FILE": str(tmp_path / "absent"), "H4_REDIS_URL": "redis://r/0"},
    ]
    for env in cases:
        with pytest.raises(entrypoint.SecretError) as caught:
            entrypoint.secret_environment(env)
        assert "Hidden-1" not in str(caught.value)
    secret.write_text("two\nlines")
    with pytest.raises(entrypoint.SecretError):
        entrypoint.secret_environment({"H4_REDIS_PASSWORD_FILE": str(secret),
                                       "H4_REDIS_URL": "redis://redis:6379/0"})


def test_entrypoint_refuses_every_example_secret(entrypoint):
    examples = sorted(SECRETS_EXAMPLE.glob("*.txt"))
    assert {p.stem for p in examples} == set(compose()["secrets"])
    for example in examples:
        with pytest.raises(entrypoint.SecretError, match="placeholder"):
            entrypoint.secret_environment({"H4_SOME_SECRET_FILE": str(example),
                                           "H4_REDIS_URL": "redis://redis:6379/0"})


def test_entrypoint_execs_the_program_with_the_built_environment(tmp_path):
    secret = tmp_path / "redis_password"
    secret.write_text("Exec-Pass-1\n")
    env = {"PATH": os.environ.get("PATH", ""), "H4_REDIS_URL": "redis://redis:6379/0",
           "H4_REDIS_PASSWORD_FILE": str(secret)}
    shown = subprocess.run(
        [sys.executable, str(SCRIPTS / "entrypoint.py"), sys.executable, "-c",
         "import json, os; print(json.dumps(dict(os.environ)))"],
        env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    seen = json.loads(shown.stdout)
    assert seen["H4_REDIS_URL"] == "redis://:Exec-Pass-1@redis:6379/0"
    assert "H4_REDIS_PASSWORD_FILE" not in seen
    refused = subprocess.run(
        [sys.executable, str(SCRIPTS / "entrypoint.py"), "true"],
        env={**env, "H4_REDIS_PASSWORD_FILE": str(SECRETS_EXAMPLE / "redis_password.txt")},
        capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "H4_REDIS_PASSWORD_FILE" in refused.stderr
    usage = subprocess.run([sys.executable, str(SCRIPTS / "entrypoint.py")], env=env,
                           capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "usage" in usage.stderr


# --- docker/healthcheck.py -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def healthcheck():
    return load_script("healthcheck")


def test_healthcheck_finds_the_role_and_the_worker_node_in_the_process_list(
        healthcheck, monkeypatch):
    venv = "/opt/h4backup/bin"
    worker = [f"{venv}/python3", f"{venv}/h4backup", "worker", "--name", "h4@%h"]
    table = [
        (1, 0, ["/sbin/docker-init", "--", "h4-entrypoint", "h4backup", "worker", "--name",
                "h4@%h"]),
        (7, 1, worker),
        (12, 7, worker),  # a prefork child: the same command line
        (30, 0, [f"{venv}/python3", "/usr/local/bin/h4-healthcheck"]),
    ]
    monkeypatch.setattr(healthcheck, "processes", lambda: table)
    monkeypatch.setattr(healthcheck.socket, "gethostname", lambda: "3f2a9c1b7d0e")
    assert healthcheck.main_process() == (7, "worker", worker)
    assert healthcheck.worker_node_name() == "h4@3f2a9c1b7d0e"
    table[1] = (7, 1, worker[:3])
    table[2] = (12, 7, worker[:3])
    assert healthcheck.worker_node_name() == "h4-7@3f2a9c1b7d0e"  # h4backup's default name
    with pytest.raises(healthcheck.Unhealthy):
        healthcheck.main_process("api")


def test_healthcheck_knows_every_role_by_its_command_line(healthcheck):
    role = healthcheck.role_of
    assert role(["/opt/h4backup/bin/h4backup", "api"]) == "api"
    assert role(["python", "-m", "cli.main", "beat"]) == "beat"
    assert role(["/opt/h4backup/bin/celery", "--app", "worker.app", "flower", "--port=5555"]) \
        == "flower"
    assert role(["/opt/h4backup/bin/h4backup", "user", "add", "bob"]) is None
    assert healthcheck.expand_node_name("w%%1@%n.%d") == "w%1@" + ".".join(
        healthcheck.socket.gethostname().partition(".")[::2])


def test_healthcheck_never_prints_the_redis_password(healthcheck, monkeypatch, capsys):
    monkeypatch.setenv("H4_REDIS_URL", "redis://:Sh%40red-1@127.0.0.1:1/0")

    def leaky(*_args):
        raise healthcheck.Unhealthy("cannot reach redis://:Sh%40red-1@127.0.0.1:1 (Sh@red-1)")

    monkeypatch.setattr(healthcheck, "run", leaky)
    assert healthcheck.main(["beat"]) == 1
    out = capsys.readouterr().out
    assert "unhealthy" in out and "Sh@red-1" not in out and "Sh%40red-1" not in out
