#!/usr/bin/env python3
"""Container entrypoint: turn secret files into the settings the processes read, then exec.

    h4-entrypoint PROGRAM [ARG...]

The image runs `h4-entrypoint h4backup api|worker|beat`, and Flower as
`h4-entrypoint celery --app worker.app flower ...`. Before PROGRAM starts:

- H4_REDIS_PASSWORD_FILE (a Docker secret): its password is put, percent-encoded, into
  H4_REDIS_URL (`redis://redis:6379/0` becomes `redis://:PASSWORD@redis:6379/0`). The URL with
  the password is then never written in the compose file, nor shown by `docker inspect`.
- H4_FLOWER_BASIC_AUTH_FILE (a Docker secret): its `user:password` lines become
  FLOWER_BASIC_AUTH, which Flower reads as its --basic-auth option.

Both *_FILE variables are removed from the environment PROGRAM gets. Every other setting,
including H4_ADMIN_PASSWORD_FILE and H4_TRANSIT_KEY_FILE, is read by the service itself.
A missing or empty secret, or any *_FILE secret still holding the `CHANGE-ME` placeholder of
docker/secrets.example, stops the container with a message that names the variable and never
the secret.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from urllib.parse import quote, urlsplit, urlunsplit

REDIS_PASSWORD_FILE = "H4_REDIS_PASSWORD_FILE"
FLOWER_AUTH_FILE = "H4_FLOWER_BASIC_AUTH_FILE"
# What the example secrets in docker/secrets.example start with.
PLACEHOLDER = b"CHANGE-ME"


class SecretError(Exception):
    """A secret file is missing, empty or malformed; the message never holds the secret."""


def read_secret(name: str, path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            value = handle.read().rstrip("\r\n")
    except OSError as exc:
        raise SecretError(f"{name}: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SecretError(f"{name}: {path} is not UTF-8 text") from None
    if not value.strip():
        raise SecretError(f"{name}: {path} is empty")
    return value


def refuse_placeholders(environ: Mapping[str, str]) -> None:
    """Any *_FILE secret that still holds the example placeholder stops the container."""
    for name, path in sorted(environ.items()):
        if not name.endswith("_FILE") or not path.strip():
            continue
        try:
            with open(path.strip(), "rb") as handle:
                start = handle.read(len(PLACEHOLDER))
        except OSError:
            continue  # reported by whoever reads it
        if start == PLACEHOLDER:
            raise SecretError(f"{name}: {path.strip()} still holds the example placeholder; "
                              "create the real secret (docker/secrets.example/README.md)")


def redis_url_with_password(url: str, password: str) -> str:
    """`redis://host:6379/0` + password -> `redis://:password@host:6379/0` (user kept)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise SecretError(f"{REDIS_PASSWORD_FILE}: H4_REDIS_URL must be a redis:// or "
                          "rediss:// URL to carry a password")
    userinfo, at, host = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        raise SecretError(f"{REDIS_PASSWORD_FILE}: H4_REDIS_URL already holds a password; "
                          "give it in one place only")
    if not host:
        raise SecretError(f"{REDIS_PASSWORD_FILE}: H4_REDIS_URL names no host")
    netloc = f"{userinfo}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def flower_basic_auth(text: str) -> str:
    """`user:password` lines (blank lines and # comments skipped) -> Flower's comma list."""
    credentials = [line.strip() for line in text.splitlines()]
    credentials = [line for line in credentials if line and not line.startswith("#")]
    for line in credentials:
        user, colon, password = line.partition(":")
        if not user or not colon or not password or "," in line:
            raise SecretError(f"{FLOWER_AUTH_FILE}: every line must be user:password, "
                              "without commas")
    if not credentials:
        raise SecretError(f"{FLOWER_AUTH_FILE}: no user:password line")
    return ",".join(credentials)


def secret_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment for the program: secrets folded in, the *_FILE variables removed."""
    refuse_placeholders(environ)
    env = dict(environ)
    password_file = env.pop(REDIS_PASSWORD_FILE, "").strip()
    if password_file:
        url = env.get("H4_REDIS_URL", "").strip()
        if not url:
            raise SecretError(f"{REDIS_PASSWORD_FILE} is set but H4_REDIS_URL is not "
                              "(e.g. redis://redis:6379/0)")
        password = read_secret(REDIS_PASSWORD_FILE, password_file)
        if "\n" in password or "\r" in password:
            raise SecretError(f"{REDIS_PASSWORD_FILE}: {password_file} must hold one line")
        env["H4_REDIS_URL"] = redis_url_with_password(url, password)
    auth_file = env.pop(FLOWER_AUTH_FILE, "").strip()
    if auth_file:
        env["FLOWER_BASIC_AUTH"] = flower_basic_auth(read_secret(FLOWER_AUTH_FILE, auth_file))
    return env


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: h4-entrypoint PROGRAM [ARG...]", file=sys.stderr)
        return 2
    try:
        env = secret_environment(os.environ)
    except SecretError as exc:
        print(f"h4-entrypoint: {exc}", file=sys.stderr)
        return 2
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        print(f"h4-entrypoint: cannot run {argv[0]}: {exc.strerror}", file=sys.stderr)
        return 127
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
