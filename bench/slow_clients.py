"""How each way of serving the API copes with slow clients: latency, req/s, memory, deadlines.

    .venv/bin/python -m bench.slow_clients [--seconds 5] [--watch 32] [--only gevent,nginx]

Candidates, each serving the bare endpoint of bench.bare_app (through bench.slow_app) with 2
worker processes on 127.0.0.1:
  gthread  gunicorn's gthread worker, 8 threads: how the API was served before;
  gevent   cli.server.gunicorn_worker.ApiWorker with the API's serving_options, as served now;
  nginx    Debian's nginx in front of gthread (apt-get install -y nginx-light), its own
           config in a temp folder, client_header_timeout, client_body_timeout and
           limit_conn set as H4_HEADER_TIMEOUT_SECONDS, H4_BODY_TIMEOUT_SECONDS and
           H4_CONNECTIONS_PER_ADDRESS (times the workers) set the API's worker;
  uvicorn  uvicorn with the WSGI app behind a2wsgi, when both import (not project
           dependencies: `pip install --target DIR uvicorn a2wsgi h11`, then run this with
           PYTHONPATH=DIR).
A candidate whose tools are missing is skipped with a note.

For each: (a) a normal client's sequential GET /ping for --seconds (p50/p99; a request that
takes over 2 s counts as timed out), then wrk -t2 -c16 for --seconds (skipped with a note
without wrk); (b) the same while 200 slowloris connections from 127.0.0.2 send one header line
every 1.5 s and 50 connections from 127.0.0.3 that declared a 1000-byte body to POST /upload
send one byte a second (a connection the server closes is opened again on its next tick, as
an attacker would); (c) the memory of the server's processes once the 250 are open; (d) how
long the server holds a slow connection before it closes it, watched for --watch seconds
from the first slow connection. All in about 3 minutes.

The yardstick is each candidate's own baseline: a server that copes shows the same latency
and req/s under slow clients as without them, and closes a slow connection at its deadline
(10 s for headers, 30 s of grace for a body, by default). The gthread row is what the API had
before, the floor any choice must clear.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import http.client
import importlib.util
import math
import os
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.servicelib import (  # noqa: E402
    WrkResult,
    interrupt_on_signals,
    machine_note,
    parse_wrk,
    port_open,
)
from common.config import load_settings  # noqa: E402
from tests.integration.harness import free_port  # noqa: E402

CANDIDATES = ("gthread", "gevent", "nginx", "uvicorn")
LABELS = {"gthread": "gunicorn gthread, 8 threads (before)",
          "gevent": "gunicorn gevent ApiWorker (now)",
          "nginx": "nginx -> gunicorn gthread",
          "uvicorn": "uvicorn + a2wsgi"}
REQUEST_TIMEOUT = 2.0  # a normal request slower than this has failed, for the client and wrk
SLOWLORIS_SOURCE, TRICKLE_SOURCE = "127.0.0.2", "127.0.0.3"
SETTLE_SECONDS = 2.0  # after the slow connections open, before anything is measured
REFUSALS = (429, 503)  # a slow connection answered at once: refused by a connection limit


# --- the servers ----------------------------------------------------------------------------


@dataclass
class Server:
    port: int
    processes: list[subprocess.Popen]


def spawn(command: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, then after 5 s SIGKILL to the process group it leads (its own session)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def wait_serving(port: int, processes: list[subprocess.Popen], log: Path) -> None:
    """The port answers GET /ping with 200 (gunicorn binds before its workers are ready)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            break
        if port_open(port):
            with contextlib.suppress(OSError, http.client.HTTPException):
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("GET", "/ping")
                if connection.getresponse().status == 200:
                    connection.close()
                    return
        time.sleep(0.1)
    raise RuntimeError(f"the server on port {port} did not start:\n"
                       f"{log.read_text(errors='replace')[-3000:]}")


def app_command(serve: str, port: int, workers: int) -> list[str]:
    return [sys.executable, "-m", "bench.slow_app", "--port", str(port), "--workers",
            str(workers), "--serve", serve]


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/sbin/nginx") if os.access(path, os.X_OK)), None)


def nginx_config(folder: Path, port: int, upstream: int, workers: int) -> Path:
    settings = load_settings()
    # limit_conn counts in the whole nginx; the API's worker counts per gunicorn worker.
    per_address = settings.connections_per_address * workers
    config = folder / "nginx.conf"
    config.write_text(f"""
daemon off;
worker_processes auto;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    limit_conn_zone $binary_remote_addr zone=per_address:1m;
    upstream api {{
        server 127.0.0.1:{upstream};
        keepalive 16;
        keepalive_timeout 5s;  # below gunicorn's keep-alive, so nginx closes first
    }}
    server {{
        listen 127.0.0.1:{port};
        client_header_timeout {settings.header_timeout_seconds}s;
        client_body_timeout {settings.body_timeout_seconds}s;
        send_timeout {settings.client_idle_seconds}s;
        keepalive_timeout {settings.header_timeout_seconds}s;
        limit_conn per_address {per_address};
        limit_conn_status 429;
        location / {{
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
""")
    return config


@contextlib.contextmanager
def serving(candidate: str, workers: int, folder: Path) -> Iterator[Server]:
    """The candidate up and answering; every process it started stopped on the way out."""
    processes: list[subprocess.Popen] = []
    log = folder / f"{candidate}.log"
    try:
        port = free_port()
        if candidate == "nginx":
            upstream = free_port()
            processes.append(spawn(app_command("gthread", upstream, workers), log))
            wait_serving(upstream, processes, log)
            conf_dir = folder / "nginx"
            conf_dir.mkdir()
            conf_dir.chmod(0o755)  # nginx's workers run as nobody when started by root
            config = nginx_config(conf_dir, port, upstream, workers)
            processes.append(spawn([nginx_binary() or "nginx", "-p", str(conf_dir), "-e",
                                    str(conf_dir / "error.log"), "-c", str(config)], log))
        else:
            processes.append(spawn(app_command(candidate, port, workers), log))
        wait_serving(port, processes, log)
        yield Server(port, processes)
    finally:
        for process in reversed(processes):
            stop(process)


def skip_reason(candidate: str, folder: Path) -> str | None:
    if candidate == "nginx":
        binary = nginx_binary()
        if not binary:
            return "nginx is not installed (apt-get install -y nginx-light)"
        test = subprocess.run([binary, "-v"], capture_output=True, timeout=10)
        if test.returncode != 0:
            return f"nginx does not run: {test.stderr.decode(errors='replace').strip()}"
    if candidate == "uvicorn":
        missing = [name for name in ("uvicorn", "a2wsgi", "h11")
                   if importlib.util.find_spec(name) is None]
        if missing:
            return (f"{', '.join(missing)} not importable (pip install --target DIR uvicorn "
                    "a2wsgi h11, then PYTHONPATH=DIR)")
    return None


# --- memory ---------------------------------------------------------------------------------


def process_tree(roots: list[int]) -> list[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    found, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(child for child, parent in parents.items() if parent == pid)
    return found


def _kib(path: str, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


@dataclass(frozen=True)
class Memory:
    rss_mib: float  # summed over the processes: pages a fork shares count once in each
    pss_mib: float  # each shared page split among its sharers: the fair total
    processes: int


def memory(server: Server) -> Memory:
    pids = process_tree([p.pid for p in server.processes])
    rss = sum(_kib(f"/proc/{pid}/status", "VmRSS") for pid in pids)
    pss = sum(_kib(f"/proc/{pid}/smaps_rollup", "Pss") for pid in pids)
    return Memory(rss / 1024, pss / 1024, len(pids))


# --- a normal client and wrk ----------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    seconds: list[float]  # of the requests answered 200 within REQUEST_TIMEOUT
    failed: int

    def at(self, share: float) -> float:
        """Nearest-rank percentile, a failed request counting as slower than any answer."""
        total = len(self.seconds) + self.failed
        if not total:
            return math.inf
        rank = max(1, math.ceil(share * total))
        ordered = sorted(self.seconds)
        return ordered[rank - 1] * 1000 if rank <= len(ordered) else math.inf


def sequential_gets(port: int, seconds: float) -> Latency:
    """GET /ping one after another on a keep-alive connection, opened again after a failure."""
    times: list[float] = []
    failed = 0
    deadline = time.monotonic() + seconds
    connection = None
    while time.monotonic() < deadline:
        if connection is None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT,
                                                    source_address=("127.0.0.1", 0))
        started = time.perf_counter()
        try:
            connection.request("GET", "/ping", headers={"Accept": "application/json"})
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise http.client.HTTPException(f"status {response.status}")
            times.append(time.perf_counter() - started)
            if response.will_close:
                connection.close()
                connection = None
        except (OSError, http.client.HTTPException):
            failed += 1
            connection.close()
            connection = None
    if connection is not None:
        connection.close()
    return Latency(times, failed)


def run_wrk(port: int, seconds: int) -> WrkResult | None:
    wrk = shutil.which("wrk")
    if not wrk:
        return None
    command = [wrk, "-t2", "-c16", f"-d{seconds}s", f"--timeout={REQUEST_TIMEOUT:.0f}s",
               "--latency", f"http://127.0.0.1:{port}/ping"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30)
    return parse_wrk(done.stdout) if done.returncode == 0 else None


# --- slow clients ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SlowKind:
    name: str
    source: str
    count: int
    interval: float  # seconds between two sends, and before opening a closed one again
    opening: bytes
    tick: Callable[[int], bytes]


def slow_kinds(slowloris: int, trickle: int) -> list[SlowKind]:
    return [
        SlowKind("header", SLOWLORIS_SOURCE, slowloris, 1.5,
                 b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n",
                 lambda n: f"X-Slow-{n}: {n}\r\n".encode()),
        SlowKind("body", TRICKLE_SOURCE, trickle, 1.0,
                 b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                 b"application/octet-stream\r\nContent-Length: 1000\r\n\r\n",
                 lambda _n: b"x"),
    ]


@dataclass
class Slot:
    kind: SlowKind
    sock: socket.socket | None = None
    opened: float = 0.0
    sent: int = 0
    reply: bytes = b""


@dataclass(frozen=True)
class Ended:
    kind: str
    lifetime: float
    status: int | None  # of the server's answer before it closed, if any


def _status(reply: bytes) -> int | None:
    parts = reply.split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return None


@dataclass
class SlowClients:
    """Holds the slow connections from one thread; stops by itself at hard_seconds."""

    port: int
    kinds: list[SlowKind]
    hard_seconds: float
    ended: list[Ended] = field(default_factory=list)
    connect_failures: int = 0
    started: float = 0.0

    def __post_init__(self) -> None:
        self._slots = [Slot(kind) for kind in self.kinds for _ in range(kind.count)]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="slow-clients", daemon=True)

    def start(self) -> None:
        self.started = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def open_counts(self) -> dict[str, int]:
        with self._lock:
            counts = {kind.name: 0 for kind in self.kinds}
            for slot in self._slots:
                if slot.sock is not None:
                    counts[slot.kind.name] += 1
            return counts

    def results(self) -> list[Ended]:
        with self._lock:
            return list(self.ended)

    def closed_by_deadline(self) -> set[str]:
        return {e.kind for e in self.results() if e.status not in REFUSALS}

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        now = time.monotonic()
        # Staggered, so the sends of one kind spread over its interval.
        due = [(now + i * 0.002, i) for i in range(len(self._slots))]
        heapq.heapify(due)
        try:
            while not self._stop.is_set() and now - self.started < self.hard_seconds:
                while due and due[0][0] <= now:
                    _, index = heapq.heappop(due)
                    slot = self._slots[index]
                    if slot.sock is None:
                        self._open(slot, selector)
                    else:
                        self._send(slot, selector)
                    heapq.heappush(due, (time.monotonic() + slot.kind.interval, index))
                wait = min(0.1, max(0.0, due[0][0] - time.monotonic())) if due else 0.1
                for key, _ in selector.select(wait):
                    self._receive(key.data, selector)
                now = time.monotonic()
        finally:
            for slot in self._slots:
                if slot.sock is not None:
                    selector.unregister(slot.sock)
                    slot.sock.close()
                    slot.sock = None
            selector.close()

    def _open(self, slot: Slot, selector: selectors.BaseSelector) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=1.0,
                                            source_address=(slot.kind.source, 0))
            sock.sendall(slot.kind.opening)
        except OSError:
            self.connect_failures += 1
            return
        sock.setblocking(False)
        with self._lock:
            slot.sock, slot.opened, slot.sent, slot.reply = sock, time.monotonic(), 0, b""
        selector.register(sock, selectors.EVENT_READ, slot)

    def _send(self, slot: Slot, selector: selectors.BaseSelector) -> None:
        try:
            slot.sock.send(slot.kind.tick(slot.sent))
            slot.sent += 1
        except BlockingIOError:
            pass
        except OSError:
            self._close(slot, selector)

    def _receive(self, slot: Slot, selector: selectors.BaseSelector) -> None:
        try:
            data = slot.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            slot.reply = (slot.reply + data)[:256]
        else:
            self._close(slot, selector)

    def _close(self, slot: Slot, selector: selectors.BaseSelector) -> None:
        selector.unregister(slot.sock)
        slot.sock.close()
        with self._lock:
            self.ended.append(Ended(slot.kind.name, time.monotonic() - slot.opened,
                                    _status(slot.reply)))
            slot.sock = None


# --- one candidate --------------------------------------------------------------------------


@dataclass
class Row:
    candidate: str
    base: Latency
    base_wrk: WrkResult | None
    slow: Latency
    slow_wrk: WrkResult | None
    idle_memory: Memory
    held_memory: Memory
    held_open: dict[str, int]
    ended: list[Ended]
    watched: float
    connect_failures: int


def measure(candidate: str, args: argparse.Namespace, folder: Path) -> Row:
    with serving(candidate, args.workers, folder) as server:
        sequential_gets(server.port, 0.5)  # first requests: imports, connections
        base = sequential_gets(server.port, args.seconds)
        base_wrk = run_wrk(server.port, args.seconds)
        idle_memory = memory(server)
        clients = SlowClients(server.port, slow_kinds(args.slowloris, args.trickle),
                              args.watch + 5)
        clients.start()
        try:
            time.sleep(SETTLE_SECONDS)
            held_open, held_memory = clients.open_counts(), memory(server)
            slow = sequential_gets(server.port, args.seconds)
            slow_wrk = run_wrk(server.port, args.seconds)
            kinds = {kind.name for kind in clients.kinds if kind.count}
            # Watch until each kind was closed at a deadline once, or --watch has passed.
            while (time.monotonic() - clients.started < args.watch
                   and not kinds <= clients.closed_by_deadline()):
                time.sleep(0.2)
            watched = time.monotonic() - clients.started
        finally:
            clients.stop()
        return Row(candidate, base, base_wrk, slow, slow_wrk, idle_memory, held_memory,
                   held_open, clients.results(), watched, clients.connect_failures)


# --- the table ------------------------------------------------------------------------------


def ms(value: float) -> str:
    if math.isinf(value):
        return f">{REQUEST_TIMEOUT * 1000:.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def latency_cell(latency: Latency) -> str:
    text = f"{ms(latency.at(0.5))}/{ms(latency.at(0.99))}"
    if latency.failed:
        text += f" ({latency.failed} of {latency.failed + len(latency.seconds)} failed)"
    return text


def rate_cell(result: WrkResult | None) -> str:
    if result is None:
        return "-"
    if not result.requests:
        return "0 (no answer)"
    text = f"{result.requests_per_second:.0f}"
    timeouts = result.socket_errors.rsplit("timeout", 1)[-1].strip(" ,") \
        if "timeout" in result.socket_errors else "0"
    problems = [f"{timeouts} t/o"] if timeouts not in ("", "0") else []
    if result.bad_status:
        problems.append(f"{result.bad_status} non-2xx")
    return text + (f" ({', '.join(problems)})" if problems else "")


def memory_cell(row: Row) -> str:
    held, idle = row.held_memory.rss_mib, row.idle_memory.rss_mib
    return f"{held:.0f} ({held - idle:+.0f})"


def held_cell(row: Row) -> str:
    parts = []
    for kind in ("header", "body"):
        times = [e.lifetime for e in row.ended if e.kind == kind and e.status not in REFUSALS]
        shown = f"{statistics.median(times):.1f}" if times else f"never in {row.watched:.0f}"
        parts.append(f"{kind} {shown}")
    return ", ".join(parts)


def print_table(rows: list[Row]) -> None:
    header = ["candidate", "p50 ms", "p99 ms", "req/s", "p50/p99 under slow clients",
              "req/s under slow clients", "RSS MiB", "slow connection held s"]
    lines = [[LABELS[row.candidate], ms(row.base.at(0.5)), ms(row.base.at(0.99)),
              rate_cell(row.base_wrk), latency_cell(row.slow), rate_cell(row.slow_wrk),
              memory_cell(row), held_cell(row)] for row in rows]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    print()
    for line in [header, ["-" * w for w in widths], *lines]:
        print(" | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
              .rstrip())


def print_details(rows: list[Row], args: argparse.Namespace) -> None:
    print()
    for row in rows:
        refused = {kind: sum(1 for e in row.ended if e.kind == kind and e.status in REFUSALS)
                   for kind in ("header", "body")}
        closed = {kind: sum(1 for e in row.ended if e.kind == kind and e.status not in REFUSALS)
                  for kind in ("header", "body")}
        print(f"{row.candidate}: open at the memory sample: {row.held_open['header']} of "
              f"{args.slowloris} slowloris, {row.held_open['body']} of {args.trickle} body "
              f"tricklers; in {row.watched:.0f} s, closed at a deadline: {closed['header']} "
              f"slowloris, {closed['body']} tricklers; refused at once (429/503): "
              f"{refused['header']} slowloris, {refused['body']} tricklers; connect failures "
              f"{row.connect_failures}. Memory, {row.held_memory.processes} processes: RSS "
              f"{row.idle_memory.rss_mib:.0f} -> {row.held_memory.rss_mib:.0f} MiB, PSS "
              f"{row.idle_memory.pss_mib:.0f} -> {row.held_memory.pss_mib:.0f} MiB")


NOTES = """
p50/p99: one client's sequential GET /ping on a keep-alive connection, in ms; >2000: not
answered within 2 s, a failed request (their count follows). req/s: wrk -t2 -c16 --timeout
2s. Both come from 127.0.0.1, the slow connections from 127.0.0.2 (slowloris) and 127.0.0.3
(body tricklers), so a per-address limit does not stand in the normal clients' way.
RSS MiB: summed over the server's processes (nginx's too) with the slow connections open, and
in brackets what they added; forked workers share pages, so PSS above is the fairer total.
held s: median time from connecting to the server closing a slow connection it had admitted
(a refusal at once by a connection limit is not counted); "never in N": none closed within
N s. nginx's client_body_timeout is between two reads, so a byte a second keeps a body open
there, but nginx buffers the body in its event loop, never in a gunicorn thread; its
limit_conn counts only connections whose headers were read. uvicorn has no deadline for
headers or bodies; bench.slow_app turns TCP_NODELAY on for it (with --workers it is left off,
and each keep-alive answer then waits 40 ms for a delayed ACK). wrk, the client and the
servers share the machine's cores."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--seconds", type=int, default=5,
                        help="each latency and wrk run (default 5)")
    parser.add_argument("--watch", type=float, default=32,
                        help="longest wait for the server to close slow connections (32 s)")
    parser.add_argument("--slowloris", type=int, default=200, help="slow header connections")
    parser.add_argument("--trickle", type=int, default=50, help="slow body connections")
    parser.add_argument("--only", default=",".join(CANDIDATES),
                        help=f"candidates, comma-separated (default {','.join(CANDIDATES)})")
    args = parser.parse_args()
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(args.only) - set(CANDIDATES)
    if unknown:
        parser.error(f"unknown candidates: {', '.join(sorted(unknown))}")
    return args


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main() -> int:
    args = parse_args()
    settings = load_settings()
    print(f"machine: {machine_note()}, {cpu_model()}")
    print(f"deadlines of the API's worker: headers {settings.header_timeout_seconds} s, idle "
          f"{settings.client_idle_seconds} s, body grace {settings.body_timeout_seconds} s, "
          f"{settings.connections_per_address} connections per address and worker")
    if not shutil.which("wrk"):
        print("wrk is not installed (apt-get install -y wrk): no req/s figures")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="h4bench-slow-") as name:
        folder = Path(name)
        for candidate in args.only:
            reason = skip_reason(candidate, folder)
            if reason:
                print(f"{candidate}: skipped: {reason}", flush=True)
                continue
            started = time.monotonic()
            try:
                rows.append(measure(candidate, args, folder))
            except RuntimeError as error:
                print(f"{candidate}: failed: {error}", flush=True)
                continue
            print(f"{candidate}: measured in {time.monotonic() - started:.0f} s", flush=True)
    if rows:
        print_table(rows)
        print_details(rows, args)
        print(NOTES)
    return 0 if rows else 1


if __name__ == "__main__":
    interrupt_on_signals()
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
