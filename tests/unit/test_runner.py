"""The runner: claim a task, run its kind's handler, record the outcome, whatever happens."""

from __future__ import annotations

import pytest

from common.backupfile.io.folder import FolderStorage
from common.errors import StorageFailure
from common.starting import TaskStarter
from common.tasks import new_backup_task, new_task
from common.transit import StaticKeys, TransitSealer
from worker import jobs, runner
from worker.context import WorkerContext


@pytest.fixture
def ctx(store, settings):
    return WorkerContext(settings, store, TransitSealer(StaticKeys((b"k" * 32,))),
                         FolderStorage(settings.backup_dir), "host:1")


@pytest.fixture
def started(ctx, dispatcher):
    """A verify task accepted as the API accepts one."""
    row = new_task("admin", "verify", "backup", "b1", backup_id="b1")
    TaskStarter(ctx.store, ctx.settings, dispatcher.message, ctx.sealer).task(row)
    return row.id


VERIFIED = {"backupId": "b1", "hashOk": True, "contentChecked": False, "files": None,
            "bytes": None}


def _handler(monkeypatch, handler):
    monkeypatch.setitem(jobs.HANDLERS, "verify", handler)


def test_a_handler_that_succeeds_ends_the_task_succeeded(ctx, started, monkeypatch):
    _handler(monkeypatch, lambda _ctx, _task, _reporter: jobs.Finish(VERIFIED))
    assert runner.run_task(ctx, started) == "done"
    task = ctx.store.get_task(started)
    assert (task.state, task.result, task.result_type) == (
        "SUCCEEDED", VERIFIED, "VerifyInfo")


def test_a_result_unlike_its_declared_fields_fails_the_task(ctx, started, monkeypatch):
    _handler(monkeypatch, lambda _ctx, _task, _reporter: jobs.Finish({"ok": True}))
    assert runner.run_task(ctx, started) == "done"
    task = ctx.store.get_task(started)
    assert (task.state, task.error["code"]) == ("FAILED", "GeneralServerFailure")


def test_a_handler_error_ends_the_task_failed_with_its_code(ctx, started, monkeypatch):
    def fails(_ctx, _task, _reporter):
        raise StorageFailure("disk on fire")

    _handler(monkeypatch, fails)
    runner.run_task(ctx, started)
    assert ctx.store.get_task(started).error["code"] == "StorageFailure"


def test_an_unexpected_exception_is_a_general_failure_not_a_running_task(ctx, started,
                                                                           monkeypatch):
    def breaks(_ctx, _task, _reporter):
        raise KeyError("bug")

    _handler(monkeypatch, breaks)
    runner.run_task(ctx, started)
    task = ctx.store.get_task(started)
    assert (task.state, task.error["code"]) == ("FAILED", "GeneralServerFailure")


def test_an_interrupted_task_stays_running_for_the_reaper(ctx, started, monkeypatch):
    def interrupted(_ctx, _task, _reporter):
        raise SystemExit("pool process told to stop")

    _handler(monkeypatch, interrupted)
    with pytest.raises(SystemExit):
        runner.run_task(ctx, started)
    assert ctx.store.get_task(started).state == "RUNNING"


def test_a_second_run_while_the_first_holds_the_lease_is_busy(ctx, started):
    assert ctx.store.claim(started, "other:2", 30)[0] == "claimed"
    assert runner.run_task(ctx, started) == "busy"


def test_a_task_whose_attempts_are_used_up_ends_worker_lost(ctx, started, monkeypatch):
    _handler(monkeypatch, lambda *_: pytest.fail("must not run"))
    for _ in range(ctx.settings.max_attempts):
        ctx.store.claim(started, "gone:9", 1)
        ctx.store.redis.delete(f"h4:task:{started}:lease")
    runner.run_task(ctx, started)
    assert ctx.store.get_task(started).error["code"] == "WorkerLost"


class FailingStorage(FolderStorage):
    """A storage that cannot be reached: every cleanup fails as an object store would."""

    def remove_leftovers(self, backup_id: str) -> int:
        from common.errors import StorageUnavailable

        raise StorageUnavailable("s3://bucket", "connection refused")


def test_a_storage_failing_before_the_handler_fails_the_task_not_leaves_it_running(
        ctx, dispatcher, monkeypatch):
    failing = WorkerContext(ctx.settings, ctx.store, ctx.sealer,
                            FailingStorage(ctx.settings.backup_dir), ctx.holder)
    row = new_backup_task("admin", "b2", encrypted=False, recipients=[])
    TaskStarter(ctx.store, ctx.settings, dispatcher.message, ctx.sealer).backup(row, "b2")
    assert runner.run_task(failing, row.id) == "done"
    task = ctx.store.get_task(row.id)
    assert (task.state, task.error["code"]) == ("FAILED", "StorageUnavailable")
