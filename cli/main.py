"""`h4backup`: run the service (serve, api, worker), manage its users, and use it as a client
(login, backup, task)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from cli.client import json_flag, register
from cli.errors import EXIT_CODES_HELP, ClientError
from cli.server.catalogue import add_catalogue_commands
from cli.server.keys import add_key_commands
from common.config import SettingsError, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return args.run(args) or 0
    except SettingsError as exc:
        print(f"h4backup: bad setting {exc}", file=sys.stderr)
        return 2
    except ClientError as exc:
        print(f"h4backup: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="h4backup", description=__doc__,
                                     epilog=EXIT_CODES_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    json_flag(parser, top_level=True)
    commands = parser.add_subparsers(title="commands")
    _server_commands(commands)
    _user_commands(commands)
    _session_commands(commands)
    add_key_commands(commands)
    add_catalogue_commands(commands)
    register(commands)
    return parser


def _server_commands(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="run the API, a worker and (if needed) Redis")
    serve.set_defaults(run=_serve)
    api = commands.add_parser("api", help="run the REST API under gunicorn")
    api.add_argument("--workers", type=int, default=None,
                     help="gunicorn worker processes (default H4_API_WORKERS, 2)")
    api.set_defaults(run=_api)
    worker = commands.add_parser("worker", help="run a Celery worker")
    worker.add_argument("--concurrency", type=int, default=None,
                        help="backups at once (default H4_WORKER_CONCURRENCY, 1)")
    worker.add_argument("--name", default=None, help="Celery node name (default h4-<pid>@host)")
    worker.set_defaults(run=_worker)
    beat = commands.add_parser("beat", help="run Celery beat: the reaper and the schedules "
                               "(run exactly one)")
    beat.set_defaults(run=_beat)


def _user_commands(commands: argparse._SubParsersAction) -> None:
    user = commands.add_parser("user", help="manage local users (on the server: uses "
                               "H4_REDIS_URL, else the Redis `h4backup serve` started)")
    user_commands = user.add_subparsers(title="user commands")
    add = user_commands.add_parser("add", help="create a user, or change one (its sessions "
                                   "end); the password is read from H4_NEW_USER_PASSWORD or "
                                   "a prompt")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="give the ADMINISTRATORS role")
    add.set_defaults(run=_server_command("user_add"))
    passwd = user_commands.add_parser("passwd", help="change a user's password (its sessions "
                                      "end); from H4_NEW_USER_PASSWORD or a prompt")
    passwd.add_argument("name")
    passwd.set_defaults(run=_server_command("user_passwd"))
    delete = user_commands.add_parser("delete", help="delete a user and end its sessions")
    delete.add_argument("name")
    delete.set_defaults(run=_server_command("user_delete"))
    listing = user_commands.add_parser("list", help="list users and their roles")
    listing.set_defaults(run=_server_command("user_list"))


def _session_commands(commands: argparse._SubParsersAction) -> None:
    session = commands.add_parser("session", help="end sessions (on the server)")
    session_commands = session.add_subparsers(title="session commands")
    revoke = session_commands.add_parser("revoke", help="end every session of a user, who "
                                         "keeps its password")
    revoke.add_argument("--user", required=True, metavar="NAME",
                        help="the user whose sessions end")
    revoke.set_defaults(run=_server_command("session_revoke"))


def _server_command(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        # Imported when run, so that the client commands start without redis and hashing.
        from cli.server import users

        return users.server_command(getattr(users, name))(args)

    return run


def _serve(_args: argparse.Namespace) -> int:
    from cli.server.serve import serve

    return serve(load_settings())


def _api(args: argparse.Namespace) -> int:
    from cli.server.gunicorn_app import run_api

    settings = load_settings()
    return run_api(settings, args.workers or settings.api_workers)


def _worker(args: argparse.Namespace) -> int:
    settings = load_settings()  # fail early, naming a bad setting, before Celery starts
    from celery.utils.nodenames import default_nodename, host_format

    from common.celery_app import CONTROL_QUEUE, QUEUE
    from common.logs import configure_logging
    from worker.app import celery
    from worker.schedule import log_ticks_at_debug

    configure_logging("worker", settings.log_level)  # Celery warns before its logging is up
    log_ticks_at_debug()

    name = args.name or f"h4-{os.getpid()}@%h"
    concurrency = args.concurrency or settings.worker_concurrency
    # Started as Celery's `worker` command starts it, without going through that command:
    # Celery's command line imports its shell and every plugin installed beside it (Flower,
    # prompt_toolkit, pygments, tornado: 14 MiB and 338 modules), which every pool process
    # would inherit. quiet: no banner on stdout, so every line is a JSON log line.
    worker = celery.Worker(hostname=host_format(default_nodename(name)),
                           queues=[QUEUE, CONTROL_QUEUE], concurrency=concurrency,
                           without_gossip=True, without_mingle=True, quiet=True)
    worker.start()
    return worker.exitcode or 0


def _beat(_args: argparse.Namespace) -> int:
    settings = load_settings()
    import worker.app
    from worker.schedule import log_ticks_at_debug

    worker.app.component = "beat"
    celery = worker.app.celery
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_ticks_at_debug()
    # As Celery's `beat` command starts it, without the imports of that command (see _worker);
    # quiet: no banner on stdout, so every line beat writes is a JSON log line.
    celery.Beat(schedule=str(settings.data_dir / "beat-schedule"), quiet=True).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
