"""The compose topology as real processes on this machine, no Docker engine needed.

Each service of docker-compose.yml is started as the image would start it: its command and
environment taken from the compose file (and the Dockerfile's ENTRYPOINT, CMD and ENV), run
through docker/entrypoint.py with its secrets in files, container paths mapped to a temporary
folder. Redis asks for a password; the API runs under gunicorn with two workers; three Celery
workers, one beat and Flower share the broker. A backup goes through the API, and Flower shows
its task id, to its own users only, without the backup password.

The same with docker-compose.s3.yml over it, backups in an object store: the test session's
SeaweedFS stands in for the override's `objectstore` service, and every process has a /backups
folder of its own, as on hosts of their own. A backup one worker made is downloaded through the
API and verified and restored by another worker, with no backup folder ever holding a file.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
import requests

from common.backupfile.io.hashing import format_sha512
from tests.deploy import (
    APP_SERVICES,
    SCRIPTS,
    compose,
    dockerfile_json,
    image_env,
    interpolate,
    raw_compose,
)
from tests.deploy.test_compose_s3 import S3_CLIENTS, S3_SECRETS, STORE, merge, merged_model, raw_s3
from tests.integration.harness import (
    REPO,
    VENDOR_JSON,
    RedisServer,
    free_port,
    stop_in_background,
    wait_until,
)
from tests.integration.objectstore import unique_bucket_name
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
    """The compose services as processes: same commands, same environment, local paths.

    `spec` is the compose model (docker-compose.yml alone by default), `secrets` the values of
    the secrets it declares beyond the four of the base file. With `own_backups`, /backups is
    a folder of each process's own (hosts/NAME/backups), as when each runs on a host of its own.
    """

    def __init__(self, root: Path, redis_server: PasswordRedis, source: Path,
                 spec: dict | None = None, secrets: dict[str, str] | None = None,
                 own_backups: bool = False) -> None:
        self.root, self.redis = root, redis_server
        self.spec = compose() if spec is None else spec
        self.own_backups = own_backups
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
            "flower_auth": f"{FLOWER_USER}:{FLOWER_PASSWORD}", **(secrets or {})}
        assert set(secret_values) == set(self.spec["secrets"])
        for name, value in secret_values.items():
            path = self.paths[f"/run/secrets/{name}"]
            path.write_text(value + "\n")
            path.chmod(0o600)

    # --- from the compose file to a process -----------------------------------------------

    def backup_folder(self, process: str | None = None) -> Path:
        """The local folder at /backups of a process (of all of them, without own_backups)."""
        if self.own_backups and process:
            return self.root / "hosts" / process / "backups"
        return self.paths["/backups"]

    def localize(self, value: str, process: str | None = None) -> str:
        """Container paths and the redis host made local, in one pass, longest path first."""
        value = value.replace("redis://redis:6379/", f"redis://127.0.0.1:{self.redis.port}/")
        paths = {**self.paths, "/backups": self.backup_folder(process)}
        pattern = "|".join(map(re.escape, sorted(paths, key=len, reverse=True)))
        return re.sub(pattern, lambda match: str(paths[match.group(0)]), value)

    def env(self, service: str, process: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("H4_", "FLOWER_", "AWS_"))}
        spec = self.spec["services"][service]
        for name, value in {**image_env(), **spec.get("environment", {})}.items():
            env[name] = self.localize(str(value), process)
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
        if self.own_backups:
            # The volume the image makes (install -d -m 0700 /backups), on this process's host.
            self.backup_folder(name).mkdir(mode=0o700, parents=True)
        with open(self.logs / f"{name}.log", "ab") as log:
            self.processes[name] = subprocess.Popen(
                argv or self.argv(service), env=self.env(service, name), cwd=REPO, stdout=log,
                stderr=subprocess.STDOUT)

    def start_all(self, workers: int = WORKERS, flower: bool = True) -> None:
        for index in range(workers):
            argv = self.argv("worker")
            # One host here, not one container per replica: give each node its own name.
            argv[argv.index("--name") + 1] = f"w{index}@%h"
            self.start(f"worker{index}", "worker", argv)
        self.start("beat", "beat")
        if flower:
            self.start("flower", "flower")
        self.start("api", "api", [*self.argv("api"), "--workers", "2"])

    def died(self) -> list[str]:
        return [name for name, p in self.processes.items() if p.poll() is not None]

    def stop(self, *names: str) -> None:
        """SIGTERM, as `docker compose stop` sends, to NAMES or to every process."""
        order = list(names) or ["api", "flower", "beat",
                                *[n for n in self.processes if n.startswith("worker")]]
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

    def log_text(self, name: str = "*") -> str:
        return "".join(p.read_text(errors="replace")
                       for p in sorted(self.logs.glob(f"{name}.log")))

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


@contextmanager
def running_topology(tmp_path: Path, **options) -> Iterator[Topology]:
    """A password Redis, a small source folder, and the Topology (stopped at the end)."""
    source = tmp_path / "source"
    (source / "etc").mkdir(parents=True)
    (source / "etc" / "appliance.conf").write_text("site = topology\n" * 200)
    (source / "notes.txt").write_text("backed up through the compose topology\n")
    redis_server = PasswordRedis(tmp_path / "redis", REDIS_PASSWORD).start()
    running = Topology(tmp_path / "service", redis_server, source, **options)
    try:
        yield running
    finally:
        stop_in_background(running, redis_server)


@pytest.fixture
def topology(tmp_path):
    require_flower()
    with running_topology(tmp_path) as running:
        yield running


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


# --- the S3 override: backups in an object store, no backup folder shared ---------------------

S3_WORKERS = 2  # two hosts: the one that makes a backup, and another that verifies and restores


def s3_compose(variables: dict[str, str] | None = None) -> dict:
    """docker-compose.yml with docker-compose.s3.yml over it, merged as test_compose_s3 merges
    them, interpolated with `variables` as a .env beside the two files would set them."""
    return interpolate(merge(raw_compose(), raw_s3()), variables or {})


@pytest.fixture
def s3_topology(tmp_path, object_store):
    """The merged topology, its S3 settings pointing at a bucket of its own in the test
    session's store; the store's keys are the s3_access_key and s3_secret_key secrets."""
    bucket = object_store.create_bucket(unique_bucket_name("h4topology"))
    spec = s3_compose({"H4_S3_ENDPOINT": object_store.endpoint, "H4_S3_BUCKET": bucket})
    keys = {"s3_access_key": object_store.access_key, "s3_secret_key": object_store.secret_key}
    s3 = object_store.client()
    try:
        with running_topology(tmp_path, spec=spec, secrets=keys, own_backups=True) as running:
            running.store, running.bucket, running.s3 = object_store, bucket, s3
            yield running
    finally:
        s3.close()


def _wait_for_api(topology: Topology, monkeypatch) -> str:
    """The API's URL once it answers over HTTPS and a worker takes its ping (GET /health)."""
    api = f"https://127.0.0.1:{topology.api_port}"
    certificate = topology.root / "data" / "tls" / "cert.pem"
    wait_until(certificate.exists, 60, "the API's certificate", interval=0.2)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate))

    def healthy() -> bool:
        assert not topology.died(), f"{topology.died()} exited:\n{topology.log_text()[-6000:]}"
        response = _poll(f"{api}/health", headers={"Accept": VENDOR_JSON})
        return response is not None and response.status_code == 200

    wait_until(healthy, 90, "GET /health to answer 200", interval=0.5)
    return api


def _login(api: str) -> requests.Session:
    http = requests.Session()
    http.headers["Accept"] = f"{VENDOR_JSON};charset=UTF-8"
    credentials = {"type": "localUser", "localUser": "admin", "localPassword": ADMIN_PASSWORD}
    login = http.post(f"{api}/sessions", json=credentials, timeout=HTTP_TIMEOUT)
    assert login.status_code == 200, login.text
    http.headers["X-VCAV-Auth"] = login.headers["X-VCAV-Auth"]
    return http


def _hang_up(http: requests.Session) -> None:
    """Close the session's connections. Session.close() alone leaves them open (urllib3 2
    closes a pool's connections only when the pool is closed or collected), and an idle
    keep-alive connection holds an API worker in its graceful stop until the keep-alive
    timeout (H4_HEADER_TIMEOUT_SECONDS, 10 s) ends it."""
    for adapter in http.adapters.values():
        pools = adapter.poolmanager.pools  # a RecentlyUsedContainer: it refuses iteration
        for key in list(pools.keys()):
            pools[key].close()
    http.close()


def _run_task(http: requests.Session, api: str, path: str, **body) -> dict:
    """POST a task, then its row once it is no longer RUNNING."""
    accepted = http.post(f"{api}{path}", json=body, timeout=HTTP_TIMEOUT)
    assert accepted.status_code == 202, accepted.text
    task_id = accepted.json()["id"]

    def finished():
        try:
            task = http.get(f"{api}/tasks/{task_id}", timeout=HTTP_TIMEOUT).json()
        except requests.RequestException:
            return None
        return task if task["state"] != "RUNNING" else None

    return wait_until(finished, 120, f"task {task_id} ({path})", interval=0.2)


def _ran_on(topology: Topology, task_id: str) -> list[str]:
    """The worker processes that received the task from the broker (Celery's log line)."""
    return [name for name in topology.processes
            if name.startswith("worker") and f"[{task_id}] received" in topology.log_text(name)]


def _bucket_keys(topology: Topology) -> list[str]:
    listed = topology.s3.list_objects_v2(Bucket=topology.bucket)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def _backup_folders_hold(topology: Topology) -> dict[str, list[str]]:
    """What each process's own /backups folder holds (it should be nothing)."""
    return {name: sorted(p.name for p in topology.backup_folder(name).rglob("*"))
            for name in topology.processes}


def test_s3_topology_keeps_backups_in_the_store_and_shares_no_backup_folder(s3_topology,
                                                                           monkeypatch):
    topology = s3_topology
    # The override's own store is not started (there is no image here): the session's is.
    assert STORE in topology.spec["services"]
    topology.start_all(workers=S3_WORKERS, flower=False)
    assert set(topology.processes) == {"api", "beat",
                                       *(f"worker{i}" for i in range(S3_WORKERS))}
    folders = {name: topology.backup_folder(name) for name in topology.processes}
    assert len(set(folders.values())) == len(folders), "no two processes share /backups"
    api = _wait_for_api(topology, monkeypatch)
    http = _login(api)

    # A backup, made by one worker, is an object in the bucket and a file in no folder.
    task = _run_task(http, api, "/backups", password=BACKUP_PASSWORD)
    assert task["state"] == "SUCCEEDED", task
    made = task["result"]
    stored_key = f"{made['id']}.tar.zst.age"
    assert stored_key in _bucket_keys(topology)
    stored = topology.s3.get_object(Bucket=topology.bucket, Key=stored_key)["Body"].read()
    assert stored.startswith(b"age-encryption.org/v1\n")
    assert _backup_folders_hold(topology) == {name: [] for name in topology.processes}

    # The API, with a /backups folder of its own that is empty, serves it from the store.
    listed = {b["id"]: b for b in http.get(f"{api}/backups", timeout=HTTP_TIMEOUT).json()}
    assert listed[made["id"]]["hash"] == made["hash"]
    download = http.get(f"{api}/backups/{made['id']}", timeout=HTTP_TIMEOUT)
    assert download.status_code == 200, download.text
    assert format_sha512(hashlib.sha512(download.content).digest()) == listed[made["id"]]["hash"]
    assert download.content == stored

    # The host that made it goes away; another worker verifies and restores it from the store.
    (maker,) = _ran_on(topology, task["id"])
    topology.stop(maker)
    assert topology.processes[maker].returncode is not None
    verified = _run_task(http, api, f"/backups/{made['id']}/verify", password=BACKUP_PASSWORD)
    assert verified["state"] == "SUCCEEDED", verified
    assert verified["result"]["hashOk"] and verified["result"]["contentChecked"], verified
    restored = _run_task(http, api, f"/backups/{made['id']}/restore", password=BACKUP_PASSWORD)
    assert restored["state"] == "SUCCEEDED", restored
    for done in (verified, restored):
        ran_on = _ran_on(topology, done["id"])
        assert len(ran_on) == 1 and ran_on != [maker], (done["id"], ran_on)
    source = topology.paths["/sources"]
    restored_root = Path(restored["result"]["path"]) / "sources"
    for path in ("etc/appliance.conf", "notes.txt"):
        assert (restored_root / path).read_bytes() == (source / path).read_bytes(), path
    assert _backup_folders_hold(topology) == {name: [] for name in topology.processes}
    assert stored_key in _bucket_keys(topology)

    # Stopped as `docker compose stop` does; no password and no S3 key in any log.
    _hang_up(http)
    topology.stop()
    logs = topology.log_text()
    for secret in (BACKUP_PASSWORD, REDIS_PASSWORD, quote(REDIS_PASSWORD, safe=""),
                   ADMIN_PASSWORD, topology.store.secret_key):
        assert secret not in logs


def test_s3_topology_env_follows_the_merged_compose_files(tmp_path):
    """api, worker and beat get the override's S3 settings, each its own /backups; the merge
    with no variable set is test_compose_s3's model."""
    assert s3_compose() == merged_model()
    spec = s3_compose({"H4_S3_ENDPOINT": "http://127.0.0.1:18333", "H4_S3_BUCKET": "h4-bucket"})
    keys = {name: f"{name}-value" for name in S3_SECRETS}
    fake = RedisServer(tmp_path / "redis")
    topology = Topology(tmp_path / "service", fake, tmp_path / "source", spec=spec,
                        secrets=keys, own_backups=True)
    backup_dirs = set()
    for service in S3_CLIENTS:
        env = topology.env(service, service)
        assert env["H4_STORAGE"] == "s3", service
        assert env["H4_S3_ENDPOINT"] == "http://127.0.0.1:18333"
        assert env["H4_S3_BUCKET"] == "h4-bucket" and env["H4_S3_PREFIX"] == ""
        for name in S3_SECRETS:
            variable = f"H4_S3_{name.removeprefix('s3_').upper()}_FILE"
            path = Path(env[variable])
            assert path == topology.secrets / f"{name}.txt", variable
            assert path.read_text().strip() == keys[name] and path.stat().st_mode & 0o077 == 0
        assert env["H4_BACKUP_DIR"] == str(tmp_path / "service" / "hosts" / service / "backups")
        backup_dirs.add(env["H4_BACKUP_DIR"])
    assert len(backup_dirs) == len(S3_CLIENTS)
    assert "H4_STORAGE" not in topology.env("flower", "flower")
