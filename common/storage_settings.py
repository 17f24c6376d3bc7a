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
    access_key, secret_key = _credentials(env)
    lock_mode, lock_days = _lock(env)
    return S3Settings(bucket=_bucket(env), endpoint=_endpoint(env), prefix=_prefix(env),
                      region=env.get("H4_S3_REGION", "").strip() or "us-east-1",
                      access_key=access_key, secret_key=secret_key,
                      lock_mode=lock_mode, lock_days=lock_days)


def _bucket(env: Mapping[str, str]) -> str:
    bucket = env.get("H4_S3_BUCKET", "").strip()
    if not _BUCKET.match(bucket):
        raise SettingsError("H4_S3_BUCKET", f"needs a valid bucket name, got {bucket!r}")
    return bucket


def _endpoint(env: Mapping[str, str]) -> str | None:
    endpoint = env.get("H4_S3_ENDPOINT", "").strip()
    if endpoint and not endpoint.startswith(("http://", "https://")):
        raise SettingsError("H4_S3_ENDPOINT", "must start with http:// or https://")
    return endpoint or None


def _prefix(env: Mapping[str, str]) -> str:
    prefix = env.get("H4_S3_PREFIX", "").strip().lstrip("/")
    if not _PREFIX.match(prefix) or ".." in prefix.split("/"):
        raise SettingsError("H4_S3_PREFIX", "use letters, digits and _./- only")
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


def _lock(env: Mapping[str, str]) -> tuple[str | None, int]:
    mode = env.get("H4_S3_LOCK_MODE", "").strip().upper() or None
    days = env_int(env, "H4_S3_LOCK_DAYS", 0, 0, 36500)
    if mode is not None and mode not in LOCK_MODES:
        raise SettingsError("H4_S3_LOCK_MODE", f"use GOVERNANCE or COMPLIANCE, not {mode!r}")
    if (mode is None) != (days == 0):
        raise SettingsError("H4_S3_LOCK_DAYS" if mode else "H4_S3_LOCK_MODE",
                            "object lock needs both a mode and a number of days")
    return mode, days
