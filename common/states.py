"""The task state machine: vCDA knows RUNNING, SUCCEEDED and FAILED, and nothing else.

A queued task is RUNNING with progress 0. The only moves are out of RUNNING; a final state is
final. The store enforces this table inside Redis (see `common.store`), so that a late write
from a slow or restarted worker can never move a finished task back.
"""

from __future__ import annotations

from enum import StrEnum


class TaskState(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.RUNNING: frozenset({TaskState.SUCCEEDED, TaskState.FAILED}),
    TaskState.SUCCEEDED: frozenset(),
    TaskState.FAILED: frozenset(),
}

FINAL_STATES = frozenset(state for state, moves in TRANSITIONS.items() if not moves)


def can_move(current: TaskState, target: TaskState) -> bool:
    return target in TRANSITIONS[current]
