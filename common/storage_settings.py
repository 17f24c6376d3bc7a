"""Where backups are kept: the folder of this host (the default) or an S3-compatible store.

The S3 credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or from the files
named by H4_S3_ACCESS_KEY_FILE and H4_S3_SECRET_KEY_FILE (docker secrets); never from the
command line, where every user of the host could read them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from common.envvars import SettingsError, env_int

# S3's own rule for bucket names (lowercase, 3-63, no leading or trailing dot or dash).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX = re.compile(r"^[A-Za-z0-9_./-]{0,512}$")
LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")


@dataclass(frozen=True)
class S3Settings:
    bucket: str
    endpoint: str | None
    prefix: str
    region: str
    access_key: str | None = field(repr=False)
    secret_key: str | None = field(repr=False)
    lock_mode: str | None = None
    lock_days: int = 0


def load_s3_settings(env: Mapping[str, str]) -> S3Settings | None:
    """None for H4_STORAGE=folder (the default); the checked S3 settings for s3."""
    kind = env.get("H4_STORAGE", "").strip().lower() or "folder"
    if kind == "folder":
        return None
    if kind != "s3":
        raise SettingsError("H4_STORAGE", f"use folder or s3, not {kind!r}")
    return _s3_settings(env, "H4_S3_", _credentials(env))


def _s3_settings(env: Mapping[str, str], names: str,
                 credentials: tuple[str | None, str | None]) -> S3Settings:
    """The settings of one store from the variables starting with `names` (H4_S3_ for the
    primary, H4_REPLICA_S3_ for the replica)."""
    lock_mode, lock_days = _lock(env, names)
    return S3Settings(bucket=_bucket(env, names), endpoint=_endpoint(env, names),
                      prefix=_prefix(env, names),
                      region=env.get(names + "REGION", "").strip() or "us-east-1",
                      access_key=credentials[0], secret_key=credentials[1],
                      lock_mode=lock_mode, lock_days=lock_days)


@dataclass(frozen=True)
class ReplicaSettings:
    """Where the second copy of each backup goes: a folder (another disk, a mount) or a
    second object store."""

    folder: Path | None = None
    s3: S3Settings | None = None


def load_replica_settings(env: Mapping[str, str]) -> ReplicaSettings | None:
    """None without H4_REPLICA (the default: one copy)."""
    kind = env.get("H4_REPLICA", "").strip().lower() or "none"
    if kind == "none":
        return None
    if kind == "folder":
        folder = env.get("H4_REPLICA_DIR", "").strip()
        if not folder.startswith("/"):
            raise SettingsError("H4_REPLICA_DIR", "needs an absolute folder for the copies")
        return ReplicaSettings(folder=Path(folder))
    if kind == "s3":
        credentials = (_from_file(env, "H4_REPLICA_S3_ACCESS_KEY_FILE"),
                       _from_file(env, "H4_REPLICA_S3_SECRET_KEY_FILE"))
        if bool(credentials[0]) != bool(credentials[1]):
            raise SettingsError("H4_REPLICA_S3_SECRET_KEY_FILE", "the access key and the "
                                "secret key are given together or not at all")
        return ReplicaSettings(s3=_s3_settings(env, "H4_REPLICA_S3_", credentials))
    raise SettingsError("H4_REPLICA", f"use none, folder or s3, not {kind!r}")


def _bucket(env: Mapping[str, str], names: str) -> str:
    bucket = env.get(names + "BUCKET", "").strip()
    if not _BUCKET.match(bucket):
        raise SettingsError(names + "BUCKET", f"needs a valid bucket name, got {bucket!r}")
    return bucket


def _endpoint(env: Mapping[str, str], names: str) -> str | None:
    endpoint = env.get(names + "ENDPOINT", "").strip()
    if endpoint and not endpoint.startswith(("http://", "https://")):
        raise SettingsError(names + "ENDPOINT", "must start with http:// or https://")
    return endpoint or None


def _prefix(env: Mapping[str, str], names: str) -> str:
    prefix = env.get(names + "PREFIX", "").strip().lstrip("/")
    if not _PREFIX.match(prefix) or ".." in prefix.split("/"):
        raise SettingsError(names + "PREFIX", "use letters, digits and _./- only")
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def _credentials(env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """Both from files, or both from the AWS variables, or none (the store may not need them,
    or boto3 finds an instance role)."""
    access = _from_file(env, "H4_S3_ACCESS_KEY_FILE") or env.get("AWS_ACCESS_KEY_ID") or None
    secret = (_from_file(env, "H4_S3_SECRET_KEY_FILE") or env.get("AWS_SECRET_ACCESS_KEY")
              or None)
    if bool(access) != bool(secret):
        raise SettingsError("H4_S3_SECRET_KEY_FILE" if access else "H4_S3_ACCESS_KEY_FILE",
                            "the access key and the secret key are given together or not at all")
    return access, secret


def _from_file(env: Mapping[str, str], name: str) -> str | None:
    file_name = env.get(name, "").strip()
    if not file_name:
        return None
    try:
        value = Path(file_name).read_text().strip()
    except OSError as exc:
        raise SettingsError(name, f"cannot read {file_name}: {exc.strerror}") from None
    if not value:
        raise SettingsError(name, f"{file_name} is empty")
    return value


def _lock(env: Mapping[str, str], names: str) -> tuple[str | None, int]:
    mode = env.get(names + "LOCK_MODE", "").strip().upper() or None
    days = env_int(env, names + "LOCK_DAYS", 0, 0, 36500)
    if mode is not None and mode not in LOCK_MODES:
        raise SettingsError(names + "LOCK_MODE", f"use GOVERNANCE or COMPLIANCE, not {mode!r}")
    if (mode is None) != (days == 0):
        raise SettingsError(names + ("LOCK_DAYS" if mode else "LOCK_MODE"),
                            "object lock needs both a mode and a number of days")
    return mode, days
