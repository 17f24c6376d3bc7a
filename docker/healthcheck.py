#!/usr/bin/env python3
"""Container health for every role of the image.

    h4-entrypoint h4-healthcheck [api|worker|beat|flower] [--node NAME] [--port PORT]

Run it through h4-entrypoint, so that H4_REDIS_URL carries the Redis password. Without a role
it is read from the container's main process (`h4backup api`, `h4backup worker`, ...,
`celery ... flower`). Exit 0 when healthy, 1 when not, with one line saying why.

- api:    GET /health answers 200 (over TLS, the API's certificate pinned, unless
          H4_TLS=off): Redis answers and a worker took a ping task in time.
- worker: this container's Celery worker answers a remote-control ping. Its node name comes
          from the worker's command line (`--name`, `%h` expanded) unless --node gives it.
- beat:   Redis answers and the beat schedule file was written recently (beat rewrites it
          every few minutes while it runs).
- flower: GET /healthcheck answers OK.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROLES = ("api", "worker", "beat", "flower")
VENDOR_JSON = "application/vnd.vmware.h4-v4.5+json"
# Celery beat writes its schedule at least every 3 minutes; allow for a slow disk.
BEAT_SCHEDULE_MAX_AGE_SECONDS = 15 * 60


class Unhealthy(Exception):
    pass


# --- the processes of this container ----------------------------------------------------------

def processes() -> list[tuple[int, int, list[str]]]:
    """(pid, parent pid, argv) of every process this container sees, but this one."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        found.append((int(entry.name), parent, [a.decode(errors="replace") for a in argv if a]))
    return sorted(found)


def role_of(argv: list[str]) -> str | None:
    """`... h4backup worker ...` -> worker; `... celery ... flower ...` -> flower."""
    for index, arg in enumerate(argv[:-1]):
        if (arg == "cli.main" or Path(arg).name == "h4backup") and argv[index + 1] in ROLES:
            return argv[index + 1]
    if "flower" in argv and any(Path(arg).name == "celery" for arg in argv):
        return "flower"
    return None


def main_process(role: str | None = None) -> tuple[int, str, list[str]]:
    """The service process of this container: not its forks, not an init that started it."""
    table = {pid: (parent, argv) for pid, parent, argv in processes()}
    # A fork shares its parent's command line; a wrapper (docker-init) has a child of its own.
    candidates = {pid: (parent, role_of(argv), argv) for pid, (parent, argv) in table.items()
                  if role_of(argv) and table.get(parent, (0, []))[1] != argv}
    wrappers = {parent for parent, _role, _argv in candidates.values()}
    for pid, (_parent, found, argv) in sorted(candidates.items()):
        if pid not in wrappers and (role is None or found == role):
            return pid, found, argv
    raise Unhealthy(f"no {role or 'h4backup'} process runs in this container")


def option(argv: list[str], *names: str) -> str | None:
    for index, arg in enumerate(argv):
        for name in names:
            if arg == name and index + 1 < len(argv):
                return argv[index + 1]
            if name.startswith("--") and arg.startswith(name + "="):
                return arg.partition("=")[2]
    return None


def expand_node_name(name: str) -> str:
    """Celery's node name templates: %h host name, %n its first label, %d its domain."""
    host = socket.gethostname()
    short, _dot, domain = host.partition(".")
    out, index = [], 0
    while index < len(name):
        if name[index] == "%" and index + 1 < len(name):
            out.append({"h": host, "n": short, "d": domain, "%": "%"}.get(
                name[index + 1], name[index:index + 2]))
            index += 2
        else:
            out.append(name[index])
            index += 1
    return "".join(out)


def worker_node_name() -> str:
    pid, _role, argv = main_process("worker")
    return expand_node_name(option(argv, "--name", "-n") or f"h4-{pid}@%h")


# --- the checks --------------------------------------------------------------------------------

def http_get(url: str, timeout: float, accept: str = "*/*") -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(4096).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(4096).decode(errors="replace")
    except OSError as exc:
        raise Unhealthy(f"{url}: {exc}") from None


def local_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::", "[::]") else host


def api_certificate() -> Path | None:
    """The certificate the API serves, unless it speaks plain HTTP (H4_TLS=off)."""
    from common.config import load_settings  # reads the settings, as the API does

    settings = load_settings()
    if not settings.tls:
        return None
    return settings.tls_cert_file or settings.data_dir / "tls" / "cert.pem"


def https_get(host: str, port: int, path: str, certificate: Path, timeout: float,
              accept: str) -> tuple[int, str]:
    """GET over TLS, accepting exactly the certificate the API was given (a pin): the probe
    runs beside the API, so whatever address it dials, that is the certificate to see."""
    import http.client
    import ssl

    expected = ssl.PEM_cert_to_DER_cert(certificate.read_text())
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    try:
        connection.connect()
        if connection.sock.getpeercert(binary_form=True) != expected:
            raise Unhealthy(f"the API on port {port} serves another certificate than {certificate}")
        connection.request("GET", path, headers={"Accept": accept})
        response = connection.getresponse()
        return response.status, response.read(4096).decode(errors="replace")
    except OSError as exc:
        raise Unhealthy(f"https://{host}:{port}{path}: {exc}") from None
    finally:
        connection.close()


def check_api(port: int | None) -> str:
    host = local_host(os.environ.get("H4_HOST", "").strip())
    port = port or int(os.environ.get("H4_PORT", "").strip() or 8046)
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    accept = f"{VENDOR_JSON};charset=UTF-8"
    certificate = api_certificate()
    if certificate is None:
        status, body = http_get(f"http://{netloc}/health", timeout=8, accept=accept)
    else:
        status, body = https_get(host, port, "/health", certificate, timeout=8, accept=accept)
    if status != 200:
        raise Unhealthy(f"GET /health answered {status}: {body[:300]}")
    return "api answers /health"


def check_worker(node: str | None) -> str:
    node = node or worker_node_name()
    from worker.app import celery  # reads the settings, as the worker does

    replies = celery.control.ping(destination=[node], timeout=5.0)
    if not any(node in reply for reply in replies):
        raise Unhealthy(f"worker {node} did not answer a ping")
    return f"worker {node} answers"


def check_redis() -> None:
    import redis

    url = os.environ.get("H4_REDIS_URL") or "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5).ping()
    except redis.RedisError as exc:
        raise Unhealthy(f"Redis does not answer: {type(exc).__name__}") from None


def check_beat() -> str:
    check_redis()
    from common.config import load_settings

    folder = load_settings().data_dir
    files = list(folder.glob("beat-schedule*"))
    if not files:
        raise Unhealthy(f"no beat schedule in {folder}")
    age = time.time() - max(path.stat().st_mtime for path in files)
    if age > BEAT_SCHEDULE_MAX_AGE_SECONDS:
        raise Unhealthy(f"the beat schedule was last written {age:.0f} s ago")
    return "beat runs"


def check_flower(port: int | None) -> str:
    if port is None:
        try:
            _pid, _role, argv = main_process("flower")
            port = int(option(argv, "--port") or 0) or None
        except Unhealthy:
            port = None
        port = port or int(os.environ.get("FLOWER_PORT", "").strip() or 5555)
    status, body = http_get(f"http://127.0.0.1:{port}/healthcheck", timeout=5)
    if status != 200 or body.strip() != "OK":
        raise Unhealthy(f"Flower /healthcheck answered {status}")
    return "flower answers /healthcheck"


def run(role: str | None, node: str | None = None, port: int | None = None) -> str:
    role = role or main_process()[1]
    if role == "api":
        return check_api(port)
    if role == "worker":
        return check_worker(node)
    if role == "beat":
        return check_beat()
    return check_flower(port)


def scrub(text: str) -> str:
    """Health output is kept by Docker (docker inspect): never let the Redis password in."""
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(os.environ.get("H4_REDIS_URL", "")).password
    except ValueError:
        return text
    for secret in filter(None, {password, password and unquote(password)}):
        text = text.replace(secret, "***")
    return text


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="h4-healthcheck", description=__doc__.split("\n")[0])
    parser.add_argument("role", nargs="?", choices=ROLES)
    parser.add_argument("--node", help="the worker's Celery node name")
    parser.add_argument("--port", type=int, help="the API's or Flower's port")
    args = parser.parse_args(argv)
    try:
        print(scrub(run(args.role, args.node, args.port)))
    except Unhealthy as exc:
        print(scrub(f"unhealthy: {exc}"))
        return 1
    except Exception as exc:  # a health check reports; it never shows a traceback
        print(scrub(f"unhealthy: {type(exc).__name__}: {exc}"))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
