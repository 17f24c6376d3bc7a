"""What each kind of task does once claimed, one module per kind (`common/kinds.py` names it).

A handler builds its job from the row, runs the plain-Python pipeline of `common/backupfile`,
and says how the task ends (`Finish`); the runner owns claiming, leases and recording the end.
"""

from __future__ import annotations

import importlib

from common.kinds import KINDS
from worker.jobs.base import Finish, Handler

__all__ = ["HANDLERS", "Finish", "Handler"]


def _handler(module: str) -> Handler:
    return importlib.import_module(module).run


HANDLERS: dict[str, Handler] = {name: _handler(kind.handler) for name, kind in KINDS.items()}
