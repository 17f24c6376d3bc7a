"""Settings, read once from the environment at start.

A bad value fails at start with a `SettingsError` that names the variable, so a typo in a
deployment is found before the first request rather than in the middle of a backup.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from common.envvars import SettingsError, env_bool, env_int, env_path, env_secret
from common.storage_settings import (
    ReplicaSettings,
    S3Settings,
    load_replica_settings,
    load_s3_settings,
)

DEFAULT_PORT = 8046  # vCDA's API port
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
SOURCE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
RESERVED_SOURCE_NAMES = {".", "..", "h4backup-manifest.jsonl"}


@dataclass(frozen=True)
class SourceSetting:
    name: str
    path: Path


@dataclass(frozen=True)
class Settings:
    redis_url: str | None
    data_dir: Path
    backup_dir: Path
    restore_dir: Path
    sources: tuple[SourceSetting, ...]
    admin_user: str
    admin_password: str | None
    transit_keys: tuple[bytes, ...]
    transit_key_file: Path | None
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    session_idle_seconds: int = 1800
    task_ttl_seconds: int = 7 * 24 * 3600
    backup_quota: int = 24
    max_body_bytes: int = 64 * 1024
    max_password_bytes: int = 1024
    max_import_bytes: int = 64 * 1024**3
    zstd_level: int = 1  # measured: level 3 costs 25% of backup speed for 7% smaller files
    zstd_threads: int = 2
    scrypt_work_factor: int = 18
    user_task_cap: int = 8
    login_failures_per_user: int = 5
    login_failures_per_address: int = 20
    login_window_seconds: int = 300
    login_delay_ms: int = 250  # after a user's first failure; doubles with each one
    login_delay_max_ms: int = 3000
    lease_seconds: int = 30
    max_attempts: int = 3
    api_workers: int = 2
    worker_concurrency: int = 1
    # H4_WORKER_NICE, 0..19: workers run at this nice level (worker/process.py). At 10 a
    # worker gets about a tenth of a core the API also wants (the kernel's weights: 110
    # against 1024), so task polls stay quick, while a backup still takes every idle core.
    worker_nice: int = 10
    header_timeout_seconds: int = 10
    client_idle_seconds: int = 30
    body_timeout_seconds: int = 30
    connections_per_address: int = 32
    proxy_hops: int = 0
    tls: bool = True
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    metrics_token: str | None = None
    site_name: str = "h4backup"  # the one local site of GET /sites
    health_cache_seconds: float = 2.0
    debug: bool = False
    log_level: str = "INFO"
    s3: S3Settings | None = None  # None: backups in backup_dir
    replica: ReplicaSettings | None = None  # None: no second copy
    extra: dict[str, str] = field(default_factory=dict)
    # H4_ALERT_SECRET_FILE: the key alert deliveries are signed with (common/alerts.py), made
    # when missing; by default in the data folder. Hosts that send alerts must share one.
    alert_secret_file: Path | None = None
    # H4_CHECK_IDENTITY_FILE: an age identity file (as age-keygen writes it) that scheduled
    # full checks open backups with; read by the host running beat, never stored in Redis.
    check_identity_file: Path | None = None

    @property
    def redis(self) -> str:
        """The Redis to use: H4_REDIS_URL, or the local default (`serve` starts its own)."""
        return self.redis_url or DEFAULT_REDIS_URL

    @property
    def config_dir(self) -> Path:
        """The service's own configuration folder: the default backup source."""
        return self.data_dir / "config"


def default_data_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "h4backup"


def parse_sources(raw: str, name: str = "H4_SOURCES") -> tuple[SourceSetting, ...]:
    """`config=/etc/app,data=/var/lib/app` -> named sources; names are archive folder names."""
    sources: list[SourceSetting] = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        label, sep, path = item.partition("=")
        label, path = label.strip(), path.strip()
        if not sep or not path:
            raise SettingsError(name, f"expected NAME=/absolute/path, got {item!r}")
        if not SOURCE_NAME.match(label) or label in RESERVED_SOURCE_NAMES:
            raise SettingsError(name, f"source name {label!r} must match [A-Za-z0-9_.-]+")
        if not Path(path).is_absolute():
            raise SettingsError(name, f"source {label!r} needs an absolute path, got {path!r}")
        if any(s.name == label for s in sources):
            raise SettingsError(name, f"source name {label!r} is used twice")
        sources.append(SourceSetting(label, Path(path)))
    return tuple(sources)


def _transit_keys(env: Mapping[str, str]) -> tuple[bytes, ...]:
    """H4_TRANSIT_KEY: one key, or several separated by commas (the sealing key first)."""
    raw = env.get("H4_TRANSIT_KEY", "").strip()
    if not raw:
        return ()
    from common.transit import parse_keyring

    try:
        return parse_keyring(raw)
    except ValueError as exc:
        raise SettingsError("H4_TRANSIT_KEY", str(exc)) from None


def _transit_key_file(env: Mapping[str, str]) -> Path | None:
    """H4_TRANSIT_KEY_FILE: a keyring file, read again when it changes (rotation)."""
    file_name = env.get("H4_TRANSIT_KEY_FILE", "").strip()
    if not file_name:
        return None
    from common.transit import parse_keyring

    try:
        parse_keyring(Path(file_name).read_text())
    except OSError as exc:
        raise SettingsError("H4_TRANSIT_KEY_FILE", f"cannot read {file_name}: {exc}") from None
    except ValueError as exc:
        raise SettingsError("H4_TRANSIT_KEY_FILE", f"{file_name}: {exc}") from None
    return Path(file_name)


def _tls_on(env: Mapping[str, str]) -> bool:
    """HTTPS unless H4_TLS=off (plain HTTP, for behind a TLS-terminating proxy)."""
    raw = env.get("H4_TLS", "").strip().lower()
    if raw in ("", "on", "true", "1", "yes"):
        return True
    if raw in ("off", "false", "0", "no"):
        return False
    raise SettingsError("H4_TLS", f"use on or off, not {raw!r}")


def _tls_files(env: Mapping[str, str]) -> dict[str, Path | None]:
    """H4_TLS_CERT_FILE and H4_TLS_KEY_FILE: both or neither, both readable."""
    names = ("H4_TLS_CERT_FILE", "H4_TLS_KEY_FILE")
    given = {name: env.get(name, "").strip() for name in names}
    if not any(given.values()):
        return {"tls_cert_file": None, "tls_key_file": None}
    for name, value in given.items():
        if not value:
            raise SettingsError(name, "is needed too when the other TLS file is given")
        if not os.access(value, os.R_OK):
            raise SettingsError(name, f"cannot read {value}")
    return {"tls_cert_file": Path(given["H4_TLS_CERT_FILE"]),
            "tls_key_file": Path(given["H4_TLS_KEY_FILE"])}


def _redis_url(env: Mapping[str, str]) -> str | None:
    url = env.get("H4_REDIS_URL", "").strip()
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError("H4_REDIS_URL", "must start with redis://, rediss:// or unix://")
    return url or None


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read every setting once; raise SettingsError naming the first bad one."""
    env = os.environ if env is None else env
    data_dir = env_path(env, "H4_DATA_DIR", default_data_dir(env))
    level = env.get("H4_LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError("H4_LOG_LEVEL", f"use DEBUG, INFO, WARNING or ERROR, not {level!r}")
    admin_user = env.get("H4_ADMIN_USER", "admin").strip() or "admin"
    if not re.match(r"^[A-Za-z0-9_.@-]{1,64}$", admin_user):
        raise SettingsError("H4_ADMIN_USER", "use letters, digits and _.@- only")
    site_name = env.get("H4_SITE_NAME", "h4backup").strip() or "h4backup"
    if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", site_name):
        raise SettingsError("H4_SITE_NAME", "use letters, digits and _.- only (at most 64)")
    sources = parse_sources(env.get("H4_SOURCES", ""))
    return Settings(
        redis_url=_redis_url(env),
        data_dir=data_dir,
        backup_dir=env_path(env, "H4_BACKUP_DIR", data_dir / "backups"),
        restore_dir=env_path(env, "H4_RESTORE_DIR", data_dir / "restores"),
        sources=sources or (SourceSetting("config", data_dir / "config"),),
        admin_user=admin_user,
        admin_password=env_secret(env, "H4_ADMIN_PASSWORD"),
        transit_keys=_transit_keys(env),
        transit_key_file=_transit_key_file(env),
        host=env.get("H4_HOST", "127.0.0.1").strip() or "127.0.0.1",
        port=env_int(env, "H4_PORT", DEFAULT_PORT, 1, 65535),
        session_idle_seconds=env_int(env, "H4_SESSION_IDLE_SECONDS", 1800, 10, 7 * 24 * 3600),
        task_ttl_seconds=env_int(env, "H4_TASK_TTL_SECONDS", 7 * 24 * 3600, 60, 365 * 24 * 3600),
        backup_quota=env_int(env, "H4_BACKUP_QUOTA", 24, 1, 100000),
        max_body_bytes=env_int(env, "H4_MAX_BODY_BYTES", 64 * 1024, 1024, 64 * 1024 * 1024),
        max_import_bytes=env_int(env, "H4_MAX_IMPORT_BYTES", 64 * 1024**3, 1024, 2**50),
        zstd_level=env_int(env, "H4_ZSTD_LEVEL", 1, 1, 19),
        zstd_threads=env_int(env, "H4_ZSTD_THREADS", 2, 0, 64),
        scrypt_work_factor=env_int(env, "H4_SCRYPT_WORK_FACTOR", 18, 10, 22),
        user_task_cap=env_int(env, "H4_USER_TASK_CAP", 8, 1, 100000),
        login_failures_per_user=env_int(env, "H4_LOGIN_FAILURES_PER_USER", 5, 1, 10000),
        login_failures_per_address=env_int(env, "H4_LOGIN_FAILURES_PER_ADDRESS", 20, 1, 100000),
        login_window_seconds=env_int(env, "H4_LOGIN_WINDOW_SECONDS", 300, 1, 86400),
        login_delay_ms=env_int(env, "H4_LOGIN_DELAY_MS", 250, 0, 10000),
        login_delay_max_ms=env_int(env, "H4_LOGIN_DELAY_MAX_MS", 3000, 0, 30000),
        lease_seconds=env_int(env, "H4_LEASE_SECONDS", 30, 3, 3600),
        max_attempts=env_int(env, "H4_MAX_ATTEMPTS", 3, 1, 100),
        api_workers=env_int(env, "H4_API_WORKERS", 2, 1, 64),
        worker_concurrency=env_int(env, "H4_WORKER_CONCURRENCY", 1, 1, 64),
        worker_nice=env_int(env, "H4_WORKER_NICE", 10, 0, 19),
        alert_secret_file=env_path(env, "H4_ALERT_SECRET_FILE", data_dir / "alert-secret"),
        check_identity_file=_optional_path(env, "H4_CHECK_IDENTITY_FILE"),
        header_timeout_seconds=env_int(env, "H4_HEADER_TIMEOUT_SECONDS", 10, 1, 300),
        client_idle_seconds=env_int(env, "H4_CLIENT_IDLE_SECONDS", 30, 1, 3600),
        body_timeout_seconds=env_int(env, "H4_BODY_TIMEOUT_SECONDS", 30, 1, 3600),
        connections_per_address=env_int(env, "H4_CONNECTIONS_PER_ADDRESS", 32, 1, 100000),
        proxy_hops=env_int(env, "H4_PROXY_HOPS", 0, 0, 10),
        tls=_tls_on(env),
        **_tls_files(env),
        metrics_token=env_secret(env, "H4_METRICS_TOKEN"),
        site_name=site_name,
        debug=env_bool(env, "H4_DEBUG"),
        log_level=level,
        s3=load_s3_settings(env),
        replica=load_replica_settings(env),
    )


def _optional_path(env: Mapping[str, str], name: str) -> Path | None:
    """An absolute path when the variable is set, None when not."""
    return env_path(env, name, Path()) if env.get(name, "").strip() else None
