"""What the service benchmarks share: a private stack of real processes, wrk, percentiles.

Every process runs on 127.0.0.1 on a free port with its own redis-server, never the machine's
Redis on 6379, and everything started is stopped and removed at the end, on Ctrl-C too.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.integration.harness import (  # noqa: E402
    VENDOR_JSON,
    RedisServer,
    Service,
    port_open,
    wait_until,
)

ACCEPT = f"{VENDOR_JSON};charset=UTF-8"
# The highest H4_BACKUP_QUOTA and H4_USER_TASK_CAP accept: no benchmark comes near it.
UNLIMITED = "100000"
RUNNING_KEY = "h4:tasks:running"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def need_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if not path:
        raise SystemExit(f"{name} is not installed; on Debian/Ubuntu: apt-get install -y {package}")
    return path


def interrupt_on_signals() -> None:
    """SIGTERM and SIGHUP end a benchmark as Ctrl-C does: everything it started is stopped."""
    for number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, _interrupt)


def _interrupt(_number: int, _frame: object) -> None:
    raise KeyboardInterrupt


def machine_note() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPU cores, load average {load} (1, 5, 15 min)"


def make_tiny_source(folder: Path, files: int = 4) -> Path:
    """A few small files, so a backup costs the service's own overhead rather than data."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(files):
        (folder / f"file{n}.txt").write_text(f"line {n} of a tiny source\n" * 40)
    return folder


class PrivateRedis(RedisServer):
    """The harness's redis-server, in its own session: a Ctrl-C reaches only the benchmark,
    which then stops the API and the workers before their Redis."""

    def start(self) -> PrivateRedis:
        binary = need_tool("redis-server", "redis-server")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction",
             "--logfile", str(self.folder / "redis.log")],
            stdout=subprocess.DEVNULL, start_new_session=True)
        wait_until(lambda: port_open(self.port), 15, "redis-server")
        return self


@dataclass
class Stack(Service):
    """The API as `h4backup api --workers N` and workers as `h4backup worker --concurrency 1`."""

    api_workers: int = 2

    def spawn(self, name: str, *args: str) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{name}.log", "ab") as log:
            return subprocess.Popen([sys.executable, "-m", "cli.main", *args], env=self.env(),
                                    cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def start_api(self) -> None:
        self.api = self.spawn("api", "api", "--workers", str(self.api_workers))
        wait_until(lambda: port_open(self.port) or self.api.poll() is not None, 60, "the API")
        if self.api.poll() is not None:
            raise SystemExit(f"the API did not start:\n{self.logs()[-4000:]}")

    def add_workers(self, count: int) -> None:
        """Start workers and wait until each consumes (Celery logs `ready.` at INFO)."""
        for _ in range(count):
            index = len(self.workers)
            self.workers.append(self.spawn(f"worker{index}", "worker", "--concurrency", "1",
                                           "--name", f"bench{index}@%h"))
        wait_until(self.workers_ready, 90, "the workers to consume")
        if any(w.poll() is not None for w in self.workers):
            raise SystemExit(f"a worker did not start:\n{self.logs()[-4000:]}")


@contextmanager
def running_stack(env: dict[str, str], api_workers: int = 2,
                  sources: dict[str, Path] | None = None) -> Iterator[Stack]:
    """Redis and the API running (no workers yet); all stopped and removed on the way out.
    The backups read `sources`, by default a tiny one made here."""
    root = Path(tempfile.mkdtemp(prefix="h4bench-service-"))
    redis = PrivateRedis(root / "redis")
    sources = sources or {"tiny": make_tiny_source(root / "source")}
    # Plain HTTP, as the bare yardstick serves: the figures compare the application alone.
    stack = Stack(root=root, redis=redis, sources=sources, extra_env={"H4_TLS": "off", **env},
                  api_workers=api_workers)
    try:
        redis.start()
        stack.start_api()
        yield stack
    finally:
        stack.stop()
        redis.stop()
        shutil.rmtree(root, ignore_errors=True)


def stop_process(process: subprocess.Popen, seconds: float = 30) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def percentile(values: list[float], share: float) -> float:
    """Linear interpolation between the closest ranks; share is 0..1."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = share * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary_ms(values: list[float]) -> str:
    """p50/p99/min/max of values in seconds, in milliseconds."""
    ms = [v * 1000 for v in values]
    return (f"p50 {percentile(ms, 0.5):7.2f} ms  p99 {percentile(ms, 0.99):7.2f} ms  "
            f"min {min(ms):7.2f}  max {max(ms):7.2f}  mean {statistics.fmean(ms):7.2f}  "
            f"(n={len(ms)})")


# --- wrk ------------------------------------------------------------------------------------

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    bad_status: int
    socket_errors: str


def wrk_script(folder: Path, name: str, method: str, headers: dict[str, str],
               body: str | None = None) -> Path:
    """A wrk Lua script sending one fixed request (wrk's own -H cannot set a body)."""
    lines = [f'wrk.method = "{method}"']
    lines += [f'wrk.headers["{key}"] = "{value}"' for key, value in headers.items()]
    if body is not None:
        lines.append(f"wrk.body = '{body}'")
    path = folder / f"{name}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_wrk(url: str, script: Path, seconds: int, threads: int = 2,
            connections: int = 16) -> WrkResult:
    command = [need_tool("wrk", "wrk"), f"-t{threads}", f"-c{connections}", f"-d{seconds}s",
               "--latency", "-s", str(script), url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise SystemExit(f"wrk failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return parse_wrk(done.stdout)


def parse_wrk(text: str) -> WrkResult:
    def number(pattern: str, default: str = "0") -> str:
        match = re.search(pattern, text, re.MULTILINE)
        return match.group(1) if match else default

    latency = dict(re.findall(r"^\s*(50|99)%\s+([\d.]+\w+)\s*$", text, re.MULTILINE))
    socket_errors = re.search(r"^\s*Socket errors:\s*(.+)$", text, re.MULTILINE)
    return WrkResult(float(number(r"^Requests/sec:\s+([\d.]+)")), _ms(latency.get("50", "0ms")),
                     _ms(latency.get("99", "0ms")), int(number(r"^\s*(\d+) requests in")),
                     int(number(r"^\s*Non-2xx or 3xx responses:\s*(\d+)")),
                     socket_errors.group(1).strip() if socket_errors else "")


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()
    return float(value) * _UNIT_MS[unit]


# --- CPU of server processes -----------------------------------------------------------------


def child_pids(parent: int) -> list[int]:
    """Direct children of a process: the workers of a gunicorn arbiter."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        if int(fields[1]) == parent:
            children.append(int(stat.parent.name))
    return sorted(children)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
