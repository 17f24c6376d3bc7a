"""`h4backup serve`: the whole service in one command, for a first try or a small site.

Starts a private `redis-server` on a free port when H4_REDIS_URL is not set (its data kept in
the data folder, append-only, never evicting), then the API and one worker as child processes.
Ctrl-C stops them all, the worker first given time to finish what it runs.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from cli.server.users import redis_url_file
from common.bootstrap import (
    admin_password,
    admin_password_file,
    transit_keys,
    write_config_snapshot,
)
from common.config import Settings
from common.privatefiles import replace as private_replace

REDIS_MISSING = """h4backup: no H4_REDIS_URL is set and no redis-server is installed.
Install one (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis)
or point H4_REDIS_URL at a running Redis, then run `h4backup serve` again."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_private_redis(settings: Settings) -> tuple[subprocess.Popen, str]:
    """A redis-server only this account can reach or read: a new password at every start,
    its folder 0700 and its files 0600. Returns the process and the URL (with the password)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit(REDIS_MISSING)
    folder = _private_folder(settings.data_dir / "redis")
    port, password = free_port(), secrets.token_urlsafe(32)
    config = folder / "redis.conf"
    # On the command line the password would show in `ps` to every local account.
    private_replace(config, _redis_config(port, folder, password))
    process = subprocess.Popen([binary, str(config)], stdout=subprocess.DEVNULL,
                               process_group=0, umask=0o077)
    wait_for_port(port, process)
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    # The other commands (`user add`, ...) find serve's Redis here.
    private_replace(redis_url_file(settings), url + "\n")
    return process, url


def _private_folder(folder: Path) -> Path:
    """The folder and everything in it readable by this account only, older files included."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    for path in folder.rglob("*"):
        path.chmod(0o700 if path.is_dir() else 0o600)
    return folder


def _redis_config(port: int, folder: Path, password: str) -> str:
    settings = {
        "port": port, "bind": "127.0.0.1", "protected-mode": "yes", "dir": folder,
        "appendonly": "yes", "save": '""', "maxmemory-policy": "noeviction",
        "logfile": folder / "redis.log", "requirepass": password,
    }
    return "".join(f"{name} {value}\n" for name, value in settings.items())


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"h4backup: a child process exited early ({process.args[0]})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"h4backup: nothing listens on port {port} after {seconds} s")


def _child(command: str, env: dict[str, str]) -> subprocess.Popen:
    # Own process groups: Ctrl-C reaches serve alone, which then stops the children in order.
    return subprocess.Popen([sys.executable, "-m", "cli.main", command], env=env,
                            process_group=0)


def _stop(processes: list[subprocess.Popen], grace: float = 70) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()


def serve(settings: Settings) -> int:
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    settings.backup_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_config_snapshot(settings)
    transit_keys(settings)  # created once here, so the children never race to create it
    admin_password(settings)
    env = dict(os.environ)
    children: list[subprocess.Popen] = []
    if settings.redis_url is None:
        redis_process, env["H4_REDIS_URL"] = start_private_redis(settings)
        children.append(redis_process)
    worker, beat, api = _child("worker", env), _child("beat", env), _child("api", env)
    # Stop the API first (no new work), then the worker (finish work), then Redis.
    order = [api, beat, worker, *children]
    _announce(settings)
    return _supervise(order)


def _announce(settings: Settings) -> None:
    where = ("H4_ADMIN_PASSWORD" if settings.admin_password
             else f"the file {admin_password_file(settings)}")
    scheme = "https" if settings.tls else "http"
    print(f"h4backup: API on {scheme}://{settings.host}:{settings.port}/ ; log in as "
          f"{settings.admin_user!r} with the password in {where}; backups go to "
          f"{settings.backup_dir}. Ctrl-C stops.", file=sys.stderr, flush=True)


def _supervise(order: list[subprocess.Popen]) -> int:
    stopping = {"signal": False}

    def request_stop(_signum: int, _frame: object) -> None:
        stopping["signal"] = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    while not stopping["signal"] and all(p.poll() is None for p in order):
        time.sleep(0.2)
    failed = [p for p in order if p.poll() not in (None, 0)]
    _stop(order)
    return 1 if failed and not stopping["signal"] else 0
