"""`h4backup transit-key rotate`: a new key for sealing passwords on their way to workers.

The keyring file holds the sealing key first and the one before it. Running API and worker
processes read the file again when it changes, so a rotation needs no restart; a password
sealed under a dropped key no longer opens anywhere, in any copy of Redis's files either.
"""

from __future__ import annotations

import argparse

from cli.errors import USAGE, ClientError
from common.bootstrap import transit_key_file
from common.config import load_settings
from common.transit import rotate_key_file

ENVIRONMENT_KEYS = (
    "the transit keys come from H4_TRANSIT_KEY: rotate by a rolling restart (add the new key "
    "after the current one everywhere, then put it first, then drop the old one); see "
    "SECURITY.md")


def add_key_commands(commands: argparse._SubParsersAction) -> None:
    key = commands.add_parser("transit-key", help="the keys that seal passwords in transit")
    key_commands = key.add_subparsers(title="transit-key commands")
    rotate = key_commands.add_parser(
        "rotate", help="seal with a new key from now on; keep the previous key, drop older "
                       "ones (running processes follow without a restart)")
    rotate.set_defaults(run=_rotate)


def _rotate(_args: argparse.Namespace) -> int:
    settings = load_settings()
    if settings.transit_keys:
        raise ClientError(ENVIRONMENT_KEYS, USAGE)
    path = transit_key_file(settings)
    if not path.exists():
        raise ClientError(f"no keyring at {path}: start the service once, or set "
                          "H4_TRANSIT_KEY_FILE", USAGE)
    new_id, dropped = rotate_key_file(path)
    print(f"h4backup: {path}: sealing with new key {new_id}; the previous key still opens; "
          f"{dropped} older key(s) dropped")
    return 0
