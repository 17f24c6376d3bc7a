"""The client subcommands of `h4backup`: log in, then drive backups and tasks over REST.

Only argparse is imported here; `requests` and `rich` load when a client command runs, so
the server commands start as fast as before.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from collections.abc import Callable

from cli.errors import STDOUT_CLOSED, ClientError
from cli.passwords import (
    LOGIN_PASSWORD_ENV,
    add_backup_password_options,
    add_new_key_options,
    refuse_password_argument,
)

DEFAULT_URL = "https://127.0.0.1:8046"
TASK_STATES = ("RUNNING", "SUCCEEDED", "FAILED")
ASK = "a prompt on a terminal, or exit code 2 without one"
LOGIN_TRUST = "the system's CAs (or $REQUESTS_CA_BUNDLE); the choice is saved with the session"

Handler = Callable[[argparse.Namespace], int]


def json_flag(parser: argparse.ArgumentParser, top_level: bool = False) -> None:
    """`--json` before or after the subcommand; a subcommand must not reset a top-level one."""
    parser.add_argument("--json", action="store_true",
                        default=False if top_level else argparse.SUPPRESS,
                        help="one JSON object per line on stdout, messages on stderr")


def register(commands: argparse._SubParsersAction) -> None:
    _login_commands(commands)
    _backup_commands(commands.add_parser("backup", allow_abbrev=False, help="create, list, "
                                         "download, delete, restore, verify, rekey and copy "
                                         "backups"))
    _task_commands(commands.add_parser("task", allow_abbrev=False, help="show and list tasks"))
    _alert_commands(commands.add_parser("alerts", allow_abbrev=False, help="webhook alerts of "
                                        "task events: targets, a test, the delivery log"))
    _check_commands(commands.add_parser("checks", allow_abbrev=False, help="scheduled "
                                        "integrity checks of every listed backup"))


def _handler(name: str) -> Handler:
    def run(args: argparse.Namespace) -> int:
        from cli import commands

        try:
            return getattr(commands, name)(args)
        except ClientError as exc:
            print(f"h4backup: {exc}", file=sys.stderr)
            return exc.exit_code
        except BrokenPipeError:
            # The reader left (`| head -1`): silence the flush at exit, end as SIGPIPE would.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return STDOUT_CLOSED

    return run


def _command(group: argparse._SubParsersAction, name: str, handler: str,
             help_text: str) -> argparse.ArgumentParser:
    # No abbreviations: `--password x` must be refused, not read as `--password-file x`.
    parser = group.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
    json_flag(parser)
    _trust_options(parser, LOGIN_TRUST if name == "login" else "the choice saved at login")
    parser.set_defaults(run=_handler(handler))
    return parser


def _trust_options(parser: argparse.ArgumentParser, otherwise: str) -> None:
    group = parser.add_argument_group(
        "server certificate", "How the server is authenticated. Without either option: "
        f"$H4_CA_CERT or $H4_FINGERPRINT, else {otherwise}.")
    choice = group.add_mutually_exclusive_group()
    choice.add_argument("--ca-cert", metavar="FILE",
                        help="CA certificates to check the server's certificate against, as "
                             "curl --cacert: a CA bundle, or the server's own certificate "
                             "(<data dir>/tls/cert.pem)")
    choice.add_argument("--fingerprint", metavar="SHA256",
                        help="accept only the server certificate with this SHA-256 "
                             "fingerprint (as `h4backup serve` prints it; colons optional); "
                             "its signer and host names are then not checked")


def uuid_text(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a UUID: {text!r}") from None


def _login_commands(commands: argparse._SubParsersAction) -> None:
    login = _command(commands, "login", "login", "log in and save the session token "
                     "(password from --password-file, H4_PASSWORD, or a prompt)")
    login.add_argument("--url", default=os.environ.get("H4_URL", DEFAULT_URL),
                       help="the service's address (default: $H4_URL or %(default)s)")
    login.add_argument("--user", default=os.environ.get("H4_USER", "admin"),
                       help="local user name (default: $H4_USER or %(default)s)")
    login.add_argument("--password-file", metavar="FILE",
                       help="read the password from the first line of FILE ('-': stdin)")
    refuse_password_argument(login, LOGIN_PASSWORD_ENV)
    _command(commands, "logout", "logout", "end the session and remove the session file")


def _usage(parser: argparse.ArgumentParser) -> Handler:
    def run(_args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    return run


def _backup_commands(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(run=_usage(parser))
    group = parser.add_subparsers(title="backup commands", metavar="COMMAND")
    _create_command(group)
    listing = _command(group, "list", "backup_list", "list stored backups, newest first")
    _label_option(listing, "only backups with this label; repeat it and all must match")
    _command(group, "retention", "backup_retention", "show which backups the schedule's keep "
             "rules would delete now, and why each other one is kept (deletes nothing)")
    _download_command(group)
    _with_id(group, "delete", "backup_delete", "delete a backup and free its space")
    restore = _with_id(group, "restore", "backup_restore", "restore a backup into a new "
                       "folder under the server's restore root")
    add_backup_password_options(restore, ASK)
    verify = _with_id(group, "verify", "backup_verify", "check a backup's SHA-512; with a "
                      "password, decrypt and read the whole archive too")
    add_backup_password_options(verify, "only the SHA-512 is checked")
    rekey = _with_id(group, "rekey", "backup_rekey", "change the password (or recipients) of "
                     "an encrypted backup without re-compressing it: only its age header is "
                     "rewritten, and it gets a new SHA-512")
    add_backup_password_options(rekey, ASK)
    add_new_key_options(rekey)
    _with_id(group, "copy", "backup_copy", "copy a backup to the replica store now, checked "
             "by its SHA-512 (each new backup is copied by itself)")


def _alert_commands(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(run=_usage(parser))
    group = parser.add_subparsers(title="alert commands", metavar="COMMAND")
    _command(group, "show", "alerts_show", "show the webhook targets")
    targets = _command(group, "set", "alerts_set", "set the webhook targets (none: alerts off)")
    targets.add_argument("--target", metavar="URL", action="append", default=[],
                         help="an http(s) URL that gets each event as a signed POST; repeat it "
                              "for more")
    targets.add_argument("--events", default="task.failed",
                         help="comma-separated: task.failed, task.succeeded, backup.overdue "
                              "(default %(default)s)")
    targets.add_argument("--overdue-after", type=int, metavar="SECONDS",
                         help="send backup.overdue when the schedule is on and no scheduled "
                              "backup has been listed for this long")
    _command(group, "test", "alerts_test", "send a test event to every target")
    log = _command(group, "log", "alerts_log", "show the latest delivery attempts")
    log.add_argument("--limit", type=int, default=20, help="how many (default %(default)s)")


def _check_commands(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(run=_usage(parser))
    group = parser.add_subparsers(title="check commands", metavar="COMMAND")
    _command(group, "show", "checks_show", "show the schedule of integrity checks")
    setting = _command(group, "set", "checks_set", "verify every listed backup on a schedule; "
                       "a damaged one fails its task (alert task.failed) and is marked in the "
                       "backup list")
    when = setting.add_mutually_exclusive_group(required=True)
    when.add_argument("--every", type=int, metavar="SECONDS", help="run every SECONDS")
    when.add_argument("--cron", metavar="EXPR", help="run at `minute hour day month weekday`, "
                      "UTC")
    when.add_argument("--off", action="store_true", help="no scheduled checks")
    setting.add_argument("--full", action="store_true",
                         help="also read every file of the backups that the identity in "
                              "H4_CHECK_IDENTITY_FILE (on the host running beat) opens")


def _create_command(group: argparse._SubParsersAction) -> None:
    create = _command(group, "create", "backup_create", "generate a backup")
    create.add_argument("--id", type=uuid_text, help="choose the backup's UUID; repeating "
                        "the command with it returns the same task instead of a second backup")
    _label_option(create, "a label to keep with the backup; repeat it for more")
    _wait_flag(create)
    add_backup_password_options(create, ASK)


def label_pair(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"not NAME=VALUE: {text!r}")
    return name, value


def _label_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--label", metavar="NAME=VALUE", type=label_pair, action="append",
                        default=[], help=help_text)


def _with_id(group: argparse._SubParsersAction, name: str, handler: str,
             help_text: str) -> argparse.ArgumentParser:
    parser = _command(group, name, handler, help_text)
    parser.add_argument("backup_id", metavar="ID", type=uuid_text)
    _wait_flag(parser)
    return parser


def _wait_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", action="store_true",
                        help="follow the task to its end; exit 1 if it FAILED")


def _download_command(group: argparse._SubParsersAction) -> None:
    download = _command(group, "download", "backup_download", "download a backup file, "
                        "checking its SHA-512 (resumes a partial download)")
    download.add_argument("backup_id", metavar="ID", type=uuid_text)
    download.add_argument("-o", "--output", metavar="FILE",
                          help="file or folder to write (default: the server's file name "
                               "in the current folder)")
    download.add_argument("--verify", action="store_true",
                          help="also check the SHA-512 against the backup list (the catalog)")
    download.add_argument("--force", action="store_true", help="replace an existing file")


def _task_commands(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(run=_usage(parser))
    group = parser.add_subparsers(title="task commands", metavar="COMMAND")
    show = _command(group, "show", "task_show", "show one task")
    show.add_argument("task_id", metavar="ID", type=uuid_text)
    show.add_argument("--wait", action="store_true",
                      help="follow the task to its end; exit 1 if it FAILED")
    listing = _command(group, "list", "task_list", "list tasks, newest first")
    listing.add_argument("--state", choices=TASK_STATES, type=str.upper)
    listing.add_argument("--limit", type=_limit, default=20, help="1..100 (default 20)")


def _limit(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError("must be between 1 and 100")
    return value
