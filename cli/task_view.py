"""Following a server task to its end and telling how it ended, for people and for scripts."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from cli.errors import FAILED, OK, describe_api_error
from cli.output import Output, duration, format_table, human_bytes, when
from cli.progress import TaskProgress
from cli.remote import Api
from common.kinds import TaskKind, kind_with_result

Task = dict[str, Any]
FIRST_POLL_SECONDS, LAST_POLL_SECONDS = 0.2, 1.0


def wait_for(api: Api, output: Output, task: Task, label: str) -> Task:
    """Follow the task to its end, with progress; Ctrl-C leaves it running on the server."""
    progress = TaskProgress(output, label)
    try:
        return _poll(api, task, progress)
    except KeyboardInterrupt:
        progress.close()
        output.note(f"stopped waiting; task {task['id']} goes on on the server: "
                    f"h4backup task show {task['id']} --wait")
        raise
    finally:
        progress.close()


def _poll(api: Api, task: Task, progress: TaskProgress) -> Task:
    """Quickly at first (short tasks end fast), then once a second."""
    delay = FIRST_POLL_SECONDS
    progress.update(task)
    while task["state"] == "RUNNING":
        time.sleep(delay)
        delay = min(LAST_POLL_SECONDS, delay * 1.5)
        task = api.task(task["id"])
        progress.update(task)
    return task


def started(output: Output, task: Task) -> int:
    """A task accepted without --wait: its id is what a script needs next."""
    if output.json_lines:
        output.emit(task)
    else:
        output.data(task["id"])
        output.note(f"task {task['id']} {task['state']}; follow it with "
                    f"`h4backup task show {task['id']} --wait`")
    return OK


def finished(output: Output, task: Task, extra: dict[str, Any] | None = None) -> int:
    """Summary of an ended task; the exit code says whether it did what was asked."""
    for warning in task.get("warnings") or []:
        output.note(f"warning: {describe_api_error(warning)}")
    code = exit_code(task)
    if output.json_lines:
        output.emit(summary(task, extra))
    elif code == OK:
        output.pairs(result_lines(task, extra or {}))
    if task["state"] == "FAILED":
        output.note(f"task {task['id']} FAILED: {describe_api_error(task.get('error'))}")
    elif code != OK:
        output.note(f"backup {(task.get('result') or {}).get('backupId')}: SHA-512 mismatch")
    return code


def exit_code(task: Task) -> int:
    if task["state"] != "SUCCEEDED":
        return FAILED
    result = task.get("result") or {}
    return FAILED if result.get("hashOk") is False else OK


def summary(task: Task, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    line = {"message_type": "summary", "task_id": task["id"], "state": task["state"],
            "type": (task.get("workflowInfo") or {}).get("type"),
            "resource_id": (task.get("workflowInfo") or {}).get("resourceId"),
            "seconds_elapsed": _task_seconds(task), "result_type": task.get("resultType"),
            "result": task.get("result"), "error": task.get("error"),
            "warnings": task.get("warnings") or []}
    return {**line, **(extra or {})}


def _task_seconds(task: Task) -> float | None:
    if task.get("endTime", -1) < 0 or not task.get("startTime"):
        return None
    return round((task["endTime"] - task["startTime"]) / 1000, 3)


def result_lines(task: Task, extra: dict[str, Any]) -> list[tuple[str, str]]:
    """An ended task for people: its result as the table of kinds says to show it, so a new
    kind needs no code here."""
    rows = [("task", task["id"]), ("state", task["state"]),
            ("took", duration(_task_seconds(task)))]
    kind = kind_with_result(task.get("resultType"))
    if kind is not None:
        return rows + _kind_rows(kind, task.get("result") or {}, extra)
    info = task.get("workflowInfo") or {}
    if info.get("resourceId"):
        rows.append((str(info.get("type")), str(info.get("resourceId"))))
    return rows


def _kind_rows(kind: TaskKind, result: dict[str, Any],
               extra: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for field in kind.result:
        value = result.get(field.name)
        # A null that the kind allows means "does not apply" (verify without the key reads
        # no file), so there is nothing to show rather than a zero.
        if not ((field.nullable or field.optional) and value is None):
            rows.append((field.label or field.name, FORMATTERS[field.format](value)))
        rows += [(line.label, FORMATTERS[line.format](extra.get(line.key)))
                 for line in kind.client_lines if line.after == field.name]
    return rows


def _plain(value: Any) -> str:
    return "-" if value is None else str(value)


def _on_server(path: Any) -> str:
    return f"{_plain(path)} (on the server)"


def _hash_ok(ok: Any) -> str:
    return "ok" if ok else "MISMATCH"


def _content_read(checked: Any) -> str:
    # Verify reads the files only when it has the key to decrypt them.
    return "read in full" if checked else "not checked (no password given)"


def labels_text(labels: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((labels or {}).items())) or "none"


# How each format named in common/kinds.FORMATS is shown.
FORMATTERS: dict[str, Callable[[Any], str]] = {
    "plain": _plain, "bytes": human_bytes, "time": when, "hash-ok": _hash_ok,
    "content-read": _content_read, "on-server": _on_server, "labels": labels_text,
    "list": lambda values: ", ".join(values or ()) or "none"}


def task_rows(task: Task) -> list[tuple[str, str]]:
    info = task.get("workflowInfo") or {}
    rows = [("id", task["id"]), ("type", str(info.get("type", ""))),
            ("state", task["state"]), ("progress", f"{task.get('progress', 0)}%"),
            ("started", when(task.get("startTime"))), ("ended", when(task.get("endTime"))),
            ("user", str(task.get("user", ""))),
            ("resource", f"{info.get('resourceType', '')} {info.get('resourceId', '')}")]
    if task.get("result") is not None:
        rows.append(("result", json.dumps(task["result"])))
    if task.get("error"):
        rows.append(("error", describe_api_error(task["error"])))
    rows += [("warning", describe_api_error(w)) for w in task.get("warnings") or []]
    return rows


def task_table(tasks: list[Task]) -> list[str]:
    rows = [(t["id"], str((t.get("workflowInfo") or {}).get("type", "")), t["state"],
             f"{t.get('progress', 0)}%", when(t.get("startTime")), str(t.get("user", "")),
             str((t.get("workflowInfo") or {}).get("resourceId", ""))) for t in tasks]
    return format_table(("ID", "TYPE", "STATE", "PROGRESS", "STARTED", "USER", "RESOURCE"),
                        rows)
