"""Where passwords come from. Never a command-line argument: argv is visible to every local
user in `ps` and lands in shell history."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any

from cli.errors import USAGE, ClientError
from common.backupfile.format.age import read_identity_file

BACKUP_PASSWORD_ENV = "H4_BACKUP_PASSWORD"
LOGIN_PASSWORD_ENV = "H4_PASSWORD"
NEW_USER_PASSWORD_ENV = "H4_NEW_USER_PASSWORD"
NEW_BACKUP_PASSWORD_ENV = "H4_NEW_BACKUP_PASSWORD"


class _RefusePassword(argparse.Action):
    """Names the safe ways instead of argparse's "unrecognized arguments: --password VALUE",
    which would copy the secret into terminal logs."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        parser.error(f"{option_string} is refused: a password in the command line shows in "
                     "`ps` and shell history; use --password-file FILE ('-' for stdin), set "
                     f"{self.metavar}, or answer the prompt")


def refuse_password_argument(parser: argparse.ArgumentParser, env_name: str) -> None:
    parser.add_argument("--password", nargs="?", action=_RefusePassword, metavar=env_name,
                        default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def add_backup_password_options(parser: argparse.ArgumentParser, absent: str) -> None:
    """`absent` tells what happens when none of the options is given."""
    refuse_password_argument(parser, BACKUP_PASSWORD_ENV)
    titled = parser.add_argument_group(
        "backup password", f"never an argument; without these options: ${BACKUP_PASSWORD_ENV}, "
        f"else {absent}")
    group = titled.add_mutually_exclusive_group()
    group.add_argument("--password-file", metavar="FILE",
                       help="read the backup password from the first line of FILE "
                            "('-' for standard input)")
    group.add_argument("--password-prompt", action="store_true",
                       help="ask for the backup password on the terminal")
    group.add_argument("--no-password", action="store_true",
                       help="no backup password (for create: an unencrypted backup)")


def read_password_file(name: str) -> str:
    """The first line, without its line ending: `echo secret > f` must give `secret`."""
    try:
        text = sys.stdin.readline() if name == "-" else _first_line(Path(name))
    except OSError as exc:
        raise ClientError(f"cannot read the password file {name}: {exc.strerror}",
                          USAGE) from None
    return text.rstrip("\r\n")


def _first_line(path: Path) -> str:
    with path.open(encoding="utf-8") as handle:
        return handle.readline()


def login_password(args: argparse.Namespace) -> str:
    if args.password_file:
        return read_password_file(args.password_file)
    if os.environ.get(LOGIN_PASSWORD_ENV):
        return os.environ[LOGIN_PASSWORD_ENV]
    if not sys.stdin.isatty():
        raise ClientError(f"no password: use --password-file FILE, set {LOGIN_PASSWORD_ENV}, "
                          "or run on a terminal to be asked", USAGE)
    return getpass.getpass(f"Password for {args.user}: ")


def new_user_password(name: str) -> str:
    """A local user's new password: $H4_NEW_USER_PASSWORD, else typed twice on a terminal."""
    password = os.environ.get(NEW_USER_PASSWORD_ENV)
    if not password:
        if not sys.stdin.isatty():
            raise ClientError(f"no password for {name}: set {NEW_USER_PASSWORD_ENV}, or run "
                              "on a terminal to be asked", USAGE)
        password = getpass.getpass(f"New password for {name}: ")
        if getpass.getpass("Again: ") != password:
            raise ClientError("the passwords differ", USAGE)
    if not password:
        raise ClientError("the password is empty", USAGE)
    return password


def backup_password(args: argparse.Namespace, when_absent: str = "ask",
                    confirm: bool = True) -> str | None:
    """The chosen source, in a fixed order; `when_absent` is "ask" or "none". A new backup's
    password is typed twice (`confirm`): a typo there would make the backup unreadable."""
    if args.no_password:
        return None
    if args.password_file:
        return _not_empty(read_password_file(args.password_file))
    if args.password_prompt:
        return _prompt(confirm)
    if os.environ.get(BACKUP_PASSWORD_ENV):
        return os.environ[BACKUP_PASSWORD_ENV]
    if when_absent == "none":
        return None
    if sys.stdin.isatty():
        return _prompt(confirm)
    raise ClientError("no backup password: use --password-file FILE, --password-prompt, set "
                      f"{BACKUP_PASSWORD_ENV}, or --no-password for an unencrypted backup",
                      USAGE)


def _prompt(confirm: bool) -> str:
    first = _not_empty(getpass.getpass("Backup password: "))
    if confirm and getpass.getpass("Again: ") != first:
        raise ClientError("the passwords differ", USAGE)
    return first


def _not_empty(password: str) -> str:
    # An empty password would silently mean "unencrypted" on the server: make that explicit.
    if not password:
        raise ClientError("the backup password is empty; use --no-password for an "
                          "unencrypted backup", USAGE)
    return password


def add_new_key_options(parser: argparse.ArgumentParser) -> None:
    """The key a rekeyed backup opens with afterwards: a new passphrase, or recipients."""
    titled = parser.add_argument_group(
        "new key", f"a new password (never an argument; else ${NEW_BACKUP_PASSWORD_ENV}), "
        "or age recipients")
    group = titled.add_mutually_exclusive_group()
    group.add_argument("--new-password-file", metavar="FILE",
                       help="read the new password from the first line of FILE ('-': stdin)")
    group.add_argument("--new-password-prompt", action="store_true",
                       help="ask for the new password on the terminal (typed twice)")
    group.add_argument("--new-recipient", metavar="AGE1KEY", action="append", default=[],
                       help="an age public key to encrypt to instead; repeat it for several")
    parser.add_argument("--identity-file", metavar="FILE",
                        help="open the backup with the age identity in FILE instead of its "
                             "password")


def new_key(args: argparse.Namespace) -> dict[str, Any]:
    """The request's new key: newRecipients, or newPassword from the chosen source."""
    if args.new_recipient:
        return {"newRecipients": args.new_recipient}
    if args.new_password_file:
        return {"newPassword": _not_empty(read_password_file(args.new_password_file))}
    if not args.new_password_prompt and os.environ.get(NEW_BACKUP_PASSWORD_ENV):
        return {"newPassword": os.environ[NEW_BACKUP_PASSWORD_ENV]}
    if args.new_password_prompt or sys.stdin.isatty():
        first = _not_empty(getpass.getpass("New backup password: "))
        if getpass.getpass("Again: ") != first:
            raise ClientError("the passwords differ", USAGE)
        return {"newPassword": first}
    raise ClientError("no new key: use --new-password-file FILE, --new-password-prompt, "
                      f"--new-recipient KEY, or set {NEW_BACKUP_PASSWORD_ENV}", USAGE)


def identity_file(name: str | None) -> str | None:
    """The identity of an age identity file, as age-keygen writes it."""
    if name is None:
        return None
    try:
        return read_identity_file(name)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ClientError(f"cannot read an identity from {name}: {exc}", USAGE) from None
