"""The compose topology as real processes on this machine, no Docker engine needed.

Each service of docker-compose.yml is started as the image would start it: its command and
environment taken from the compose file (and the Dockerfile's ENTRYPOINT, CMD and ENV), run
through docker/entrypoint.py with its secrets in files, container paths mapped to a temporary
folder. Redis asks for a password; the API runs under gunicorn with two workers; three Celery
workers, one beat and Flower share the broker. A backup goes through the API, and Flower shows
its task id, to its own users only, without the backup password.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
import requests

from tests.deploy import (
    APP_SERVICES,
    SCRIPTS,
    compose,
    dockerfile_json,
    image_env,
)
from tests.integration.harness import REPO, VENDOR_JSON, RedisServer, free_port, wait_until
from tests.tools import require_tool

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

# Characters that must be percent-encoded in a URL: the secret-built URL has to carry them.
REDIS_PASSWORD = "R3dis/pass:w@rd?#%+ topology"
ADMIN_PASSWORD = "Topology-Adm1n!"
FLOWER_USER, FLOWER_PASSWORD = "operator", "Flower-Pa55-topology"
BACKUP_PASSWORD = "Backup-Pa$$w0rd-never-shown"
WORKERS = 3


class PasswordRedis(RedisServer):
    """The compose Redis: append-only, never evicting, a password required."""

    def __init__(self, folder: Path, password: str) -> None:
        super().__init__(folder, appendonly=True)
        self.password = password

    @property
    def url(self) -> str:
        return f"redis://:{quote(self.password, safe='')}@127.0.0.1:{self.port}/0"

    def start(self) -> PasswordRedis:
        binary = require_tool("redis-server")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--appendonly", "yes", "--save", "", "--maxmemory-policy", "noeviction",
             "--requirepass", self.password, "--logfile", str(self.folder / "redis.log")],
            stdout=subprocess.DEVNULL)
        wait_until(self._answers, 15, "redis-server")
        return self

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.ConnectionError:
            return False


class Topology:
    """The compose services as processes: same commands, same environment, local paths."""

    def __init__(self, root: Path, redis_server: PasswordRedis, source: Path) -> None:
        self.root, self.redis, self.spec = root, redis_server, compose()
        self.api_port, self.flower_port = free_port(), free_port()
        self.logs = root / "logs"
        self.processes: dict[str, subprocess.Popen] = {}
        self.secrets = root / "secrets"
        folders = {"/var/lib/h4backup": root / "data", "/backups": root / "backups",
                   "/restores": root / "restores", "/sources": source}
        self.paths = {f"/run/secrets/{name}": self.secrets / Path(entry["file"]).name
                      for name, entry in self.spec["secrets"].items()}
        self.paths.update(folders)
        for folder in (self.logs, self.secrets, root / "run", *folders.values()):
            folder.mkdir(parents=True, exist_ok=True)
        secret_values = {
            "redis_password": REDIS_PASSWORD, "admin_password": ADMIN_PASSWORD,
            "transit_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "flower_auth": f"{FLOWER_USER}:{FLOWER_PASSWORD}"}
        assert set(secret_values) == set(self.spec["secrets"])
        for name, value in secret_values.items():
            path = self.paths[f"/run/secrets/{name}"]
            path.write_text(value + "\n")
            path.chmod(0o600)

    # --- from the compose file to a process -----------------------------------------------

    def localize(self, value: str) -> str:
        """Container paths and the redis host made local, in one pass, longest path first."""
        value = value.replace("redis://redis:6379/", f"redis://127.0.0.1:{self.redis.port}/")
        pattern = "|".join(map(re.escape, sorted(self.paths, key=len, reverse=True)))
        return re.sub(pattern, lambda match: str(self.paths[match.group(0)]), value)

    def env(self, service: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("H4_", "FLOWER_"))}
        spec = self.spec["services"][service]
        for name, value in {**image_env(), **spec.get("environment", {})}.items():
            env[name] = self.localize(str(value))
        env.update({
            # Loopback only, a port of our own, and quicker backups than in production.
            "H4_HOST": "127.0.0.1", "H4_PORT": str(self.api_port),
            "H4_SCRYPT_WORK_FACTOR": "15", "H4_LOG_LEVEL": "DEBUG",
            "XDG_RUNTIME_DIR": str(self.root / "run"),
        })
        return env

    def argv(self, service: str) -> list[str]:
        """entrypoint + command, as the image runs them; programs mapped to this Python."""
        spec = self.spec["services"][service]
        entrypoint = spec.get("entrypoint") or dockerfile_json("ENTRYPOINT")
        command = spec.get("command") or dockerfile_json("CMD")
        command = command.split() if isinstance(command, str) else list(command)
        args = [*entrypoint, *command]
        assert args[0] == "h4-entrypoint", service
        program = {"h4backup": [sys.executable, "-m", "cli.main"],
                   "celery": [sys.executable, "-m", "celery"]}[args[1]]
        local = [sys.executable, str(SCRIPTS / "entrypoint.py"), *program]
        for arg in args[2:]:
            arg = arg.replace("--port=5555", f"--port={self.flower_port}")
            local.append(arg.replace("--address=0.0.0.0", "--address=127.0.0.1"))
        return local

    def start(self, name: str, service: str, argv: list[str] | None = None) -> None:
        with open(self.logs / f"{name}.log", "ab") as log:
            self.processes[name] = subprocess.Popen(
                argv or self.argv(service), env=self.env(service), cwd=REPO, stdout=log,
                stderr=subprocess.STDOUT)

    def start_all(self) -> None:
        for index in range(WORKERS):
            argv = self.argv("worker")
            # One host here, not one container per replica: give each node its own name.
            argv[argv.index("--name") + 1] = f"w{index}@%h"
            self.start(f"worker{index}", "worker", argv)
        self.start("beat", "beat")
        self.start("flower", "flower")
        self.start("api", "api", [*self.argv("api"), "--workers", "2"])

    def died(self) -> list[str]:
        return [name for name, p in self.processes.items() if p.poll() is not None]

    def stop(self) -> None:
        order = ["api", "flower", "beat", *[n for n in self.processes if n.startswith("worker")]]
        for name in order:
            process = self.processes.get(name)
            if process and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for name in order:
            process = self.processes.get(name)
            if process:
                try:
                    process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("*.log")))

    def run_healthcheck(self, service: str, *args: str) -> subprocess.CompletedProcess:
        """docker/healthcheck.py through the entrypoint, with the service's environment."""
        return subprocess.run(
            [sys.executable, str(SCRIPTS / "entrypoint.py"), sys.executable,
             str(SCRIPTS / "healthcheck.py"), *args],
            env=self.env(service), cwd=REPO, capture_output=True, text=True, timeout=60)


HTTP_TIMEOUT = 30  # generous: other test suites may share this machine's two cores


def _get(url: str, auth: tuple[str, str] | None = None, **kwargs) -> requests.Response:
    return requests.get(url, auth=auth, timeout=HTTP_TIMEOUT, **kwargs)


def _poll(url: str, auth: tuple[str, str] | None = None, **kwargs) -> requests.Response | None:
    """A GET inside a bounded wait: no answer yet is not a failure."""
    try:
        return _get(url, auth=auth, **kwargs)
    except requests.RequestException:
        return None


def require_flower() -> None:
    """Flower runs from this virtualenv, as in the image; missing, it skips here, fails in CI."""
    if importlib.util.find_spec("flower") is None:
        message = "flower is not installed (pip install -c constraints.txt flower)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def topology(tmp_path):
    require_flower()
    source = tmp_path / "source"
    (source / "etc").mkdir(parents=True)
    (source / "etc" / "appliance.conf").write_text("site = topology\n" * 200)
    (source / "notes.txt").write_text("backed up through the compose topology\n")
    redis_server = PasswordRedis(tmp_path / "redis", REDIS_PASSWORD).start()
    running = Topology(tmp_path / "service", redis_server, source)
    try:
        yield running
    finally:
        running.stop()
        redis_server.stop()


def test_compose_topology_runs_a_backup_that_flower_shows_without_secrets(topology,
                                                                          monkeypatch):
    port = topology.redis.port
    client = redis.Redis.from_url(topology.redis.url, decode_responses=True)

    # Redis: password required, append-only, never evicting.
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port).ping()
    assert client.config_get("appendonly")["appendonly"] == "yes"
    assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"

    # The compose healthcheck of Redis, its secret file and port made local.
    redis_health = compose()["services"]["redis"]["healthcheck"]["test"]
    assert redis_health[0] == "CMD-SHELL"
    shell = topology.localize(redis_health[1]).replace("redis-cli", f"redis-cli -p {port}")
    assert subprocess.run(["sh", "-c", shell], timeout=30).returncode == 0
    unauthenticated = f"redis-cli -p {port} ping | grep -q PONG"
    assert subprocess.run(["sh", "-c", unauthenticated], timeout=30,
                          capture_output=True).returncode != 0

    topology.start_all()
    api, flower = f"https://127.0.0.1:{topology.api_port}", \
        f"http://127.0.0.1:{topology.flower_port}"
    auth = (FLOWER_USER, FLOWER_PASSWORD)
    # The API speaks HTTPS with the certificate it generated into its data volume at start.
    certificate = topology.root / "data" / "tls" / "cert.pem"
    wait_until(certificate.exists, 60, "the API's certificate", interval=0.2)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate))

    def answers(url: str) -> bool:
        assert not topology.died(), f"{topology.died()} exited:\n{topology.log_text()[-6000:]}"
        response = _poll(url)
        return response is not None and response.status_code < 500

    wait_until(lambda: answers(f"{api}/openapi.json"), 60, "the API", interval=0.2)
    wait_until(lambda: answers(f"{flower}/healthcheck"), 60, "Flower", interval=0.2)

    # Flower: its users only; the three workers, as Celery nodes of their own.
    for url in (f"{flower}/", f"{flower}/api/workers", f"{flower}/api/tasks"):
        assert _get(url).status_code == 401, url
        assert _get(url, auth=(FLOWER_USER, "wrong")).status_code == 401, url
    assert _get(f"{flower}/healthcheck").text == "OK"  # the container healthcheck's probe
    names = {f"w{i}@" for i in range(WORKERS)}

    def workers_listed():
        response = _poll(f"{flower}/api/workers", auth=auth, params={"refresh": "1"})
        if response is None:
            return None
        assert response.status_code == 200, response.text
        listed = response.json()
        return listed if {n.split("@")[0] + "@" for n in listed} >= names else None

    workers = wait_until(workers_listed, 60, "Flower to list the three workers", interval=0.5)
    assert len([n for n in workers if n.split("@")[0] + "@" in names]) == WORKERS

    # The API is healthy: Redis answers and a worker takes the ping task.
    def healthy():
        response = _poll(f"{api}/health", headers={"Accept": VENDOR_JSON})
        return response is not None and response.status_code == 200

    wait_until(healthy, 45, "GET /health to answer 200", interval=0.5)

    # A backup, as a vCDA client asks for it.
    http = requests.Session()
    http.headers["Accept"] = f"{VENDOR_JSON};charset=UTF-8"
    credentials = {"type": "localUser", "localUser": "admin", "localPassword": ADMIN_PASSWORD}
    login = http.post(f"{api}/sessions", json=credentials, timeout=HTTP_TIMEOUT)
    assert login.status_code == 200, login.text
    http.headers["X-VCAV-Auth"] = login.headers["X-VCAV-Auth"]
    accepted = http.post(f"{api}/backups", json={"password": BACKUP_PASSWORD},
                         timeout=HTTP_TIMEOUT)
    assert accepted.status_code == 202, accepted.text
    task_id = accepted.json()["id"]

    def finished():
        try:
            task = http.get(f"{api}/tasks/{task_id}", timeout=HTTP_TIMEOUT).json()
        except requests.RequestException:
            return None
        return task if task["state"] != "RUNNING" else None

    task = wait_until(finished, 90, f"task {task_id}", interval=0.2)
    assert task["state"] == "SUCCEEDED", task
    stored = topology.root / "backups" / f"{task['result']['id']}.tar.zst.age"
    assert stored.read_bytes().startswith(b"age-encryption.org/v1\n")

    # Flower learns the task from the events: the same id as the API's, and no password.
    def flower_has_task():
        tasks = _poll(f"{flower}/api/tasks", auth=auth)
        if tasks is None:
            return None
        assert tasks.status_code == 200, tasks.text
        entry = tasks.json().get(task_id)
        return tasks if entry and entry.get("state") == "SUCCESS" else None

    tasks = wait_until(flower_has_task, 45, "Flower to show the backup task", interval=0.5)
    info = _get(f"{flower}/api/task/info/{task_id}", auth=auth)
    assert info.status_code == 200, info.text
    assert info.json()["uuid"] == task_id
    assert task_id in str(info.json()["args"])
    assert info.json()["worker"].split("@")[0] + "@" in names
    workers_text = _get(f"{flower}/api/workers", auth=auth).text
    for text in (tasks.text, info.text, workers_text):
        for secret in (BACKUP_PASSWORD, REDIS_PASSWORD, quote(REDIS_PASSWORD, safe=""),
                       ADMIN_PASSWORD):
            assert secret not in text

    # The container healthchecks, each role with its compose environment.
    checks = {
        "api": topology.run_healthcheck("api", "api"),
        "worker": topology.run_healthcheck("worker", "worker", "--node", workers_node(workers)),
        "beat": topology.run_healthcheck("beat", "beat"),
        "flower": topology.run_healthcheck("flower", "flower", "--port",
                                           str(topology.flower_port)),
        "no such worker": topology.run_healthcheck("worker", "worker", "--node", "nobody@none"),
    }
    for role in APP_SERVICES:
        assert checks[role].returncode == 0, (role, checks[role].stdout, checks[role].stderr)
    assert checks["no such worker"].returncode == 1
    assert "nobody@none did not answer" in checks["no such worker"].stdout

    # Stopped with SIGTERM, as `docker compose stop` does; nothing secret was ever logged.
    topology.stop()
    codes = {name: process.returncode for name, process in topology.processes.items()}
    assert all(code is not None for code in codes.values()), codes
    logs = topology.log_text()
    for secret in (BACKUP_PASSWORD, REDIS_PASSWORD, quote(REDIS_PASSWORD, safe=""),
                   ADMIN_PASSWORD, FLOWER_PASSWORD):
        assert secret not in logs


def workers_node(workers: dict) -> str:
    return next(name for name in sorted(workers) if name.startswith("w0@"))


def test_topology_argv_follows_the_compose_file(tmp_path):
    """The process commands above are the compose commands, with local stand-ins only."""
    fake = RedisServer(tmp_path / "redis")
    topology = Topology(tmp_path / "service", fake, tmp_path / "source")
    entry = [sys.executable, str(SCRIPTS / "entrypoint.py")]
    assert topology.argv("api") == [*entry, sys.executable, "-m", "cli.main", "api"]
    assert topology.argv("beat") == [*entry, sys.executable, "-m", "cli.main", "beat"]
    flower = topology.argv("flower")
    assert flower[:len(entry) + 6] == [*entry, sys.executable, "-m", "celery", "--app",
                                       "worker.app", "flower"]
    assert f"--port={topology.flower_port}" in flower and "--address=127.0.0.1" in flower
    env = topology.env("worker")
    assert env["H4_REDIS_URL"] == f"redis://127.0.0.1:{fake.port}/0"
    assert env["H4_REDIS_PASSWORD_FILE"] == str(topology.secrets / "redis_password.txt")
    assert env["H4_SOURCES"] == f"sources={tmp_path / 'source'}"
    assert env["H4_BACKUP_DIR"] == str(tmp_path / "service" / "backups")
    assert json.loads(json.dumps(env))  # plain strings only
