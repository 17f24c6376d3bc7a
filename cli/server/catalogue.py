"""`h4backup catalogue rebuild`: list again what the storage holds, drop what it lost.

Runs on the server against the service's Redis and storage. The reaper does the same by itself
once Redis lost its catalogue (a flush, a lost volume); this is for an administrator who wants
it now, or who also wants backups without a record (made before records existed) read and
listed.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from cli.client import json_flag
from cli.errors import FAILED, OK, ClientError
from cli.output import Output

if TYPE_CHECKING:
    from common.config import Settings
    from common.store import Store


def add_catalogue_commands(commands: argparse._SubParsersAction) -> None:
    catalogue = commands.add_parser("catalogue", help="the list of stored backups (on the "
                                                      "server)")
    catalogue_commands = catalogue.add_subparsers(title="catalogue commands")
    rebuild = catalogue_commands.add_parser(
        "rebuild", help="list every backup the storage holds; drop listed backups it lacks")
    rebuild.add_argument("--read-unrecorded", action="store_true",
                         help="also list backups that have no record, reading each whole to "
                              "take its SHA-512")
    json_flag(rebuild)
    rebuild.set_defaults(run=_rebuild)


def _rebuild(args: argparse.Namespace) -> int:
    # The server's modules load only for a server command: the client starts quicker.
    from cli.server import users

    return users.server_command(rebuild_catalogue)(args)


def rebuild_catalogue(store: Store, settings: Settings, args: argparse.Namespace,
                      output: Output) -> int:
    from common.bootstrap import backup_storage
    from common.errors import H4Error
    from common.reconcile import reconcile

    try:
        report = reconcile(store, backup_storage(settings), args.read_unrecorded)
    except H4Error as error:
        raise ClientError(f"{error.code}: {error.msg}", FAILED) from None
    if output.json_lines:
        output.emit({"relisted": report.relisted, "dropped": report.dropped,
                     "unrecorded": report.unrecorded})
    else:
        output.pairs([("listed again", str(len(report.relisted))),
                      ("dropped", str(len(report.dropped))),
                      ("without a record", str(len(report.unrecorded)))])
    if report.unrecorded and not args.read_unrecorded:
        output.note("backups without a record are not listed: run again with "
                    "--read-unrecorded to read and list them")
    return OK
