"""Real processes for integration tests: redis-server, Celery workers and the API over HTTPS.

Every service of a test run serves one test certificate, which every `requests` call of the
run trusts (REQUESTS_CA_BUNDLE); a test that needs the certificate the service generates
itself passes empty H4_TLS_CERT_FILE/H4_TLS_KEY_FILE and trusts `service.ca_file`.

A service keeps its backups in its folder or, with H4_STORAGE=s3 in `extra_env`, in an object
store; `Service.stored_names()` and its siblings read either, so a test need not know which.
"""

from __future__ import annotations

import atexit
import base64
import functools
import json
import os
import queue
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import redis
import requests
from botocore.config import Config

from tests.tools import require_tool

REPO = Path(__file__).resolve().parents[2]
VENDOR_JSON = "application/vnd.vmware.h4-v4.5+json"
# Beside each backup file, its catalogue record (README "The catalogue lives with the backups").
RECORD_SUFFIX = ".backup.json"


@functools.cache
def run_certificate() -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1 and localhost, made once per test run."""
    from cli.server.tls import self_signed_certificate

    folder = Path(tempfile.mkdtemp(prefix="h4-test-tls-"))
    atexit.register(shutil.rmtree, folder, True)
    cert_pem, key_pem = self_signed_certificate(["localhost", "127.0.0.1", "::1"])
    cert, key = folder / "cert.pem", folder / "key.pem"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    key.chmod(0o600)
    os.environ["REQUESTS_CA_BUNDLE"] = str(cert)  # this process and the clients it starts
    return cert, key


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition, seconds: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


class BackgroundStops:
    """Stops that a fixture's teardown need not wait for: run in order, on one thread.

    A warm shutdown takes a Celery worker about 2 s however idle it is (its pool's threads
    are joined) and the API about 1 s. Run here, the next test starts its own processes
    meanwhile. Each stack is stopped as by its own teardown: the service first (SIGTERM, then
    SIGKILL after 30 s), then its Redis, so a worker never loses its broker while stopping.
    `join()` waits for every stop asked so far and raises the first error one of them met; the
    test session joins at its end (tests/conftest.py), and at exit at the latest, so that no
    process outlives the run.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue()
        self._errors: list[BaseException] = []
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def add(self, *stoppables: Any) -> None:
        """Stop each of `stoppables` (anything with a stop() method), in the order given."""
        with self._lock:
            for stoppable in stoppables:
                self._queue.put(stoppable)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="background-stops",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            stoppable = self._queue.get()
            try:
                stoppable.stop()
            except BaseException as error:  # raised again by join()
                self._errors.append(error)
            finally:
                self._queue.task_done()

    def join(self) -> None:
        self._queue.join()
        errors, self._errors = self._errors, []
        if errors:
            raise errors[0]


_BACKGROUND_STOPS = BackgroundStops()
atexit.register(_BACKGROUND_STOPS.join)


def stop_in_background(*stoppables: Any) -> None:
    """Stop services, Redis servers (anything with stop()) in this order, without waiting:
    for teardowns whose test is over. See BackgroundStops."""
    _BACKGROUND_STOPS.add(*stoppables)


def join_background_stops() -> None:
    """Wait until every stop_in_background() asked so far is done."""
    _BACKGROUND_STOPS.join()


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


class RedisServer:
    """A private redis-server on a free port; never touches the machine's own Redis."""

    def __init__(self, folder: Path, appendonly: bool = False) -> None:
        self.folder, self.appendonly = folder, appendonly
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = require_tool("redis-server")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--save", "", "--appendonly", "yes" if self.appendonly else "no",
             "--maxmemory-policy", "noeviction", "--logfile", str(self.folder / "redis.log")],
            stdout=subprocess.DEVNULL)
        wait_until(lambda: port_open(self.port), 15, "redis-server")
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)

    def restart(self) -> None:
        """Stop and start again on the same port and folder (with AOF, nothing is lost)."""
        self.stop()
        self.start()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=False)


@dataclass
class Service:
    """The API and a pool of worker processes, all started as a user would start them."""

    root: Path
    redis: RedisServer
    sources: dict[str, Path]
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    admin_password: str = "integration-Adm1n!"
    workers: list[subprocess.Popen] = field(default_factory=list)
    api: subprocess.Popen | None = None
    beat: subprocess.Popen | None = None
    _s3: Any = field(default=None, repr=False, compare=False)

    @property
    def tls(self) -> bool:
        return self.extra_env.get("H4_TLS", "on") != "off"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        """The certificate the API serves: the run's test certificate, or the generated one."""
        if self.extra_env.get("H4_TLS_CERT_FILE") == "":
            return self.root / "data" / "tls" / "cert.pem"
        return run_certificate()[0]

    def connect(self, source: str = "127.0.0.1", timeout: float = 5) -> socket.socket:
        """A raw connection to the API (TLS when it speaks it), from a loopback `source`."""
        sock = socket.socket()
        try:
            sock.bind((source, 0))
            sock.settimeout(timeout)
            sock.connect(("127.0.0.1", self.port))
            if not self.tls:
                return sock
            context = ssl.create_default_context(cafile=str(self.ca_file))
            return context.wrap_socket(sock, server_hostname="127.0.0.1")
        except OSError:
            sock.close()
            raise

    @property
    def backup_dir(self) -> Path:
        return self.root / "backups"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    # --- the stored backups, wherever the service keeps them -------------------------------
    # Names are file names: `<id>.tar.zst[.age]`, records `<id>.backup.json`. In the folder
    # they are files of backup_dir; in the object store, keys `<H4_S3_PREFIX><name>`.

    @property
    def backend(self) -> str:
        """Where this service keeps its backups: "folder" or "s3"."""
        return self.extra_env.get("H4_STORAGE", "folder")

    def stored_names(self, records: bool = False) -> list[str]:
        """The finished backup files, sorted; with `records`, their catalogue records too.
        Never an unfinished write (see unfinished_writes)."""
        if self.backend == "s3":
            client, bucket, prefix = self._object_store()
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                     Prefix=prefix)
            names = [item["Key"][len(prefix):] for page in pages
                     for item in page.get("Contents", [])]
        else:
            found = self.backup_dir.iterdir() if self.backup_dir.exists() else []
            names = [p.name for p in found if not p.name.startswith(".")]
        return sorted(n for n in names if records or not n.endswith(RECORD_SUFFIX))

    def unfinished_writes(self) -> list[str]:
        """Writes under way or left behind: `.<name>.<random>.part` temporaries in the folder,
        the keys (prefix removed) of multipart uploads not completed nor aborted in the store."""
        if self.backend == "s3":
            client, bucket, prefix = self._object_store()
            uploads = client.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
            return sorted(u["Key"][len(prefix):] for u in uploads.get("Uploads", []))
        return sorted(p.name for p in self.backup_dir.glob(".*.part"))

    def stored_bytes(self, name: str) -> bytes:
        if self.backend == "s3":
            client, bucket, prefix = self._object_store()
            return client.get_object(Bucket=bucket, Key=prefix + name)["Body"].read()
        return (self.backup_dir / name).read_bytes()

    def stored_file(self, name: str, tmp_dir: Path) -> Path:
        """A local file holding the stored bytes, for tools (age -d, sha512sum): the backup
        folder's own file, or a copy downloaded into tmp_dir."""
        if self.backend != "s3":
            return self.backup_dir / name
        client, bucket, prefix = self._object_store()
        client.download_file(bucket, prefix + name, str(tmp_dir / name))
        return tmp_dir / name

    def overwrite_stored(self, name: str, data: bytes) -> None:
        """Replace a stored file's bytes behind the service's back, as damage would."""
        if self.backend == "s3":
            client, bucket, prefix = self._object_store()
            client.put_object(Bucket=bucket, Key=prefix + name, Body=data)
        else:
            (self.backup_dir / name).write_bytes(data)

    def remove_stored(self, name: str) -> None:
        """Lose a stored file behind the service's back: the file, or the object."""
        if self.backend == "s3":
            client, bucket, prefix = self._object_store()
            client.delete_object(Bucket=bucket, Key=prefix + name)
        else:
            (self.backup_dir / name).unlink()

    def _object_store(self) -> tuple[Any, str, str]:
        """(boto3 client, bucket, key prefix), all from this service's own settings."""
        env = self.extra_env
        if self._s3 is None:
            keys = [Path(env[name]).read_text().strip()
                    for name in ("H4_S3_ACCESS_KEY_FILE", "H4_S3_SECRET_KEY_FILE")]
            self._s3 = boto3.session.Session().client(
                "s3", endpoint_url=env["H4_S3_ENDPOINT"],
                region_name=env.get("H4_S3_REGION", "us-east-1"),
                aws_access_key_id=keys[0], aws_secret_access_key=keys[1],
                config=Config(s3={"addressing_style": "path"}, connect_timeout=5,
                              read_timeout=30))
        prefix = env.get("H4_S3_PREFIX", "").strip("/")
        return self._s3, env["H4_S3_BUCKET"], prefix + "/" if prefix else ""

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("H4_")}
        env.update({
            "H4_REDIS_URL": self.redis.url, "H4_DATA_DIR": str(self.root / "data"),
            "H4_BACKUP_DIR": str(self.backup_dir), "H4_PORT": str(self.port),
            "H4_SOURCES": ",".join(f"{n}={p}" for n, p in self.sources.items()),
            "H4_ADMIN_USER": "admin", "H4_ADMIN_PASSWORD": self.admin_password,
            "H4_TRANSIT_KEY": base64.urlsafe_b64encode(b"k" * 32).decode().rstrip("="),
            "H4_LOG_LEVEL": "DEBUG", "PYTHONUNBUFFERED": "1",
            "H4_TLS_CERT_FILE": str(run_certificate()[0]),
            "H4_TLS_KEY_FILE": str(run_certificate()[1]),
        })
        env.update(self.extra_env)
        return env

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{name}.log", "ab") as log:
            return subprocess.Popen([sys.executable, "-m", "cli.main", *args], env=self.env(),
                                    cwd=REPO, stdout=log, stderr=subprocess.STDOUT)

    def start_worker(self) -> subprocess.Popen:
        index = len(self.workers)
        worker = self._spawn(f"worker{index}", "worker", "--name", f"w{index}@%h")
        self.workers.append(worker)
        return worker

    def start(self, workers: int = 1, beat: bool = False) -> Service:
        self.api = self._spawn("api", "api", "--workers", "1")
        for _ in range(workers):
            self.start_worker()
        if beat:
            self.beat = self._spawn("beat", "beat")
        wait_until(lambda: port_open(self.port) or self._died(), 30, "the API port")
        assert not self._died(), self.logs()
        wait_until(self.workers_ready, 60, "the workers to consume")
        return self

    def workers_ready(self) -> bool:
        text = "".join(p.read_text(errors="replace") for p in self.log_dir.glob("worker*.log"))
        return text.count("ready.") >= len(self.workers) or self._died()

    def _died(self) -> bool:
        return any(p.poll() is not None for p in [self.api, *self.workers] if p)

    def _processes(self) -> list[subprocess.Popen]:
        return [p for p in [self.api, self.beat, *self.workers] if p]

    def stop(self) -> None:
        for process in self._processes():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self._processes():
            if process:
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    # A worker still finishing its backup after 30 s: killed, and reaped, so
                    # that no process outlives its Popen.
                    process.kill()
                    process.wait(10)
        if self._s3 is not None:
            self._s3.close()
            self._s3 = None

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))

    def command(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        """`h4backup ARGS` run on the server with this service's settings, `env` on top."""
        return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=REPO,
                              env={**self.env(), **env}, capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL)

    # --- a client, as a vCDA caller would be ---------------------------------------------

    def login(self, user: str = "admin", password: str | None = None) -> requests.Session:
        session = requests.Session()
        # Not from REQUESTS_CA_BUNDLE: it would win over the session's own CA file.
        session.trust_env = False
        session.verify = str(self.ca_file) if self.tls else True
        session.headers["Accept"] = f"{VENDOR_JSON};charset=UTF-8"
        response = session.post(f"{self.url}/sessions", json={
            "type": "localUser", "localUser": user,
            "localPassword": password or self.admin_password})
        assert response.status_code == 200, response.text
        session.headers["X-VCAV-Auth"] = response.headers["X-VCAV-Auth"]
        return session

    def wait_for_task(self, http: requests.Session, task_id: str, seconds: float = 120,
                      on_poll=None) -> dict:
        def finished():
            task = http.get(f"{self.url}/tasks/{task_id}").json()
            if on_poll:
                on_poll(task)
            return task if task["state"] != "RUNNING" else None

        return wait_until(finished, seconds, f"task {task_id}", interval=0.05)


def redis_contents(client: redis.Redis) -> list[bytes]:
    """Every key and value in a Redis database, Celery message bodies decoded."""
    blobs: list[bytes] = []
    for key in client.scan_iter("*"):
        blobs.append(key)
        blobs.extend(_values(client, key))
    return blobs + [body for blob in blobs for body in _message_bodies(blob)]


def _values(client: redis.Redis, key: bytes) -> list[bytes]:
    kind = client.type(key)
    if kind == b"string":
        return [client.get(key) or b""]
    if kind == b"hash":
        return [item for pair in client.hgetall(key).items() for item in pair]
    if kind == b"list":
        return client.lrange(key, 0, -1)
    if kind == b"set":
        return list(client.smembers(key))
    if kind == b"zset":
        return client.zrange(key, 0, -1)
    return [client.dump(key) or b""]


def _message_bodies(blob: bytes) -> list[bytes]:
    """Celery keeps message bodies base64-encoded inside JSON: decode them for the search."""
    try:
        message = json.loads(blob)
        return [base64.b64decode(message["body"])] if isinstance(message, dict) else []
    except (ValueError, KeyError, TypeError):
        return []



def parent_pid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def lease_holder_pid(client: redis.Redis, task_id: str) -> int | None:
    """The pid of the worker process running a task, from the lease it holds."""
    holder = client.get(f"h4:task:{task_id}:lease")
    return int(holder.decode().rsplit(":", 1)[1]) if holder else None
