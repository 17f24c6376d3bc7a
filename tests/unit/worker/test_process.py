"""A worker process runs below the API's priority, and gives memory back after a task that
grew it (worker/process.py)."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref

import pytest

from worker import process


def _in_a_child(code: str) -> str:
    """Runs code in a fresh interpreter (its priority and malloc settings stay its own)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, check=True)
    return done.stdout.strip()


def test_the_worker_runs_at_the_nice_level_asked_and_never_higher():
    code = ("import os; from worker.process import lower_priority; "
            "print(lower_priority(7), os.getpriority(os.PRIO_PROCESS, 0), lower_priority(3))")
    assert _in_a_child(code) == "7 7 7"


def test_one_malloc_arena_is_set_where_the_c_library_is_glibc():
    assert _in_a_child("from worker.process import limit_arenas; print(limit_arenas())") == (
        "True")


def test_the_worker_start_applies_the_nice_setting_and_the_arena_limit(monkeypatch):
    import worker.app

    calls = []
    monkeypatch.setattr(worker.app, "lower_priority", lambda nice: calls.append(nice) or nice)
    monkeypatch.setattr(worker.app, "limit_arenas", lambda: calls.append("arenas") or True)
    worker.app._settle_process()
    assert calls == [worker.app.settings.worker_nice, "arenas"]


def test_release_frees_what_reference_cycles_hold(monkeypatch):
    class Node:
        pass

    trims = []
    monkeypatch.setattr(process, "_libc", lambda: type("Libc", (), {
        "malloc_trim": staticmethod(trims.append)})())
    node = Node()
    node.cycle = node
    alive = weakref.ref(node)
    del node
    gc.disable()  # only the release may collect it
    try:
        process.release_memory()
    finally:
        gc.enable()
    assert alive() is None and trims == [0]


class _Process:
    def __init__(self) -> None:
        self.resident, self.releases = 100 << 20, 0

    def release(self) -> None:
        self.releases += 1
        self.resident = 100 << 20


def test_memory_goes_back_only_after_a_task_that_grew_the_process():
    proc = _Process()
    keeper = process.MemoryKeeper(slack=4 << 20, release=proc.release,
                                  resident=lambda: proc.resident)
    assert keeper.after_task()  # the first task sets the floor
    proc.resident += 3 << 20  # a small backup
    assert not keeper.after_task() and proc.releases == 1
    proc.resident += 60 << 20  # a large one: its arenas and buffers
    assert keeper.after_task() and proc.releases == 2 and proc.resident == 100 << 20


@pytest.mark.parametrize("outcome", ["done", RuntimeError("the store went away")])
def test_every_task_ends_with_the_memory_check(monkeypatch, outcome):
    import worker.tasks

    checks = []

    def run_task(_ctx, _task_id):
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(worker.tasks, "worker_context", lambda: None)
    monkeypatch.setattr(worker.tasks.runner, "run_task", run_task)
    monkeypatch.setattr(worker.tasks.MEMORY, "after_task", lambda: checks.append(1))
    if isinstance(outcome, Exception):
        with pytest.raises(RuntimeError):
            worker.tasks._run(None, "t-1")
    else:
        worker.tasks._run(None, "t-1")
    assert checks == [1]
