"""`h4backup user ...` and `h4backup session revoke`: run on the server, straight against the
service's Redis. Any change to a user ends that user's sessions at once."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import redis

from cli.errors import NOT_FOUND, OK, UNREACHABLE, ClientError
from cli.output import Output
from cli.passwords import new_user_password
from common.bootstrap import ADMIN_ROLES, USER_ROLES
from common.config import Settings, load_settings
from common.secrecy import hash_password
from common.store import Store

NO_REDIS = "no Redis found: start `h4backup serve` or set H4_REDIS_URL"

Action = Callable[[Store, Settings, argparse.Namespace, Output], int]


def redis_url_file(settings: Settings) -> Path:
    """Where `h4backup serve` writes the URL of its private Redis (mode 0600)."""
    return settings.data_dir / "redis" / "url"


def server_redis_url(settings: Settings) -> str:
    """H4_REDIS_URL when set, else the URL `serve` wrote, else a ClientError saying so."""
    if settings.redis_url:
        return settings.redis_url
    path = redis_url_file(settings)
    try:
        url = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        url = ""
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror}", UNREACHABLE) from None
    if not url:
        raise ClientError(NO_REDIS, UNREACHABLE)
    return url


def without_password(url: str) -> str:
    """The URL as it may be shown: its password, in the user part or the query, as ***."""
    parts = urlsplit(url)
    if parts.password is not None:
        userinfo, _, host = parts.netloc.rpartition("@")
        url = url.replace(parts.netloc, f"{userinfo.split(':', 1)[0]}:***@{host}", 1)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", url)


def server_command(action: Action) -> Callable[[argparse.Namespace], int]:
    """Runs `action` with the store; Redis failures become one line naming the URL."""
    def run(args: argparse.Namespace) -> int:
        settings = load_settings()
        url = server_redis_url(settings)
        try:
            return action(Store.from_url(url), settings, args, Output(args.json))
        except redis.RedisError as exc:
            raise _unreachable(settings, url, exc) from None

    return run


def _unreachable(settings: Settings, url: str, exc: redis.RedisError) -> ClientError:
    password = urlsplit(url).password
    reason = str(exc).replace(password, "***") if password else str(exc)
    if not settings.redis_url:
        reason += f" (the URL is from {redis_url_file(settings)}: is `h4backup serve` running?)"
    return ClientError(f"cannot reach Redis at {without_password(url)}: {reason}", UNREACHABLE)


def _known(store: Store, name: str) -> dict:
    user = store.get_user(name)
    if user is None:
        raise ClientError(f"no user {name}", NOT_FOUND)
    return user


def user_add(store: Store, _settings: Settings, args: argparse.Namespace,
             output: Output) -> int:
    existed = store.get_user(args.name) is not None
    password = new_user_password(args.name)
    store.put_user(args.name, hash_password(password), ADMIN_ROLES if args.admin else USER_ROLES)
    output.note(f"user {args.name} changed; its sessions ended" if existed
                else f"user {args.name} created")
    return OK


def user_passwd(store: Store, _settings: Settings, args: argparse.Namespace,
                output: Output) -> int:
    roles = _known(store, args.name)["roles"]
    store.put_user(args.name, hash_password(new_user_password(args.name)), roles)
    output.note(f"password of {args.name} changed; its sessions ended")
    return OK


def user_delete(store: Store, settings: Settings, args: argparse.Namespace,
                output: Output) -> int:
    if not store.delete_user(args.name):
        raise ClientError(f"no user {args.name}", NOT_FOUND)
    output.note(f"user {args.name} deleted; its sessions ended")
    if args.name == settings.admin_user:
        output.note("it is the administrator (H4_ADMIN_USER): the service creates it again "
                    "when it next starts")
    return OK


def user_list(store: Store, _settings: Settings, args: argparse.Namespace,
              output: Output) -> int:
    users = store.list_users()
    if args.json:
        for user in users:
            output.emit(user)
        return OK
    output.table(("NAME", "ROLES"), [(u["name"], ",".join(u["roles"])) for u in users])
    return OK


def session_revoke(store: Store, _settings: Settings, args: argparse.Namespace,
                   output: Output) -> int:
    if not store.end_sessions(args.user):
        raise ClientError(f"no user {args.user}", NOT_FOUND)
    output.note(f"sessions of {args.user} ended")
    return OK
