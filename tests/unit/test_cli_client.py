"""The h4backup client without a real service: session file, password sources, output shapes,
exit codes, and downloads checked against a small HTTP server on 127.0.0.1."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import stat
from pathlib import Path

import pytest

from cli import errors
from cli.main import _parser, main
from cli.output import Output, format_table, json_line
from cli.progress import PercentEta, TaskProgress, status_line
from cli.remote import Api
from cli.session import Session, load_session, save_session
from cli.transfer import Target, download, vcda_hash
from common.backupfile.format.age import generate_x25519_identity
from common.backupfile.io.hashing import plain_hex
from tests.unit import cli_fake_service
from tests.unit.cli_fake_service import BACKUP_ID, CONTENT, GOOD_HASH, TOKEN, task


@pytest.fixture
def fake(tmp_path_factory, monkeypatch):
    """A running fake service and a session file pointing at it."""
    state = {"served": CONTENT, "listed": GOOD_HASH, "requests": [], "bodies": [],
             "part_b": False,
             "tasks": [task("RUNNING", 0), task("RUNNING", 40), task("SUCCEEDED", 100)]}
    server = cli_fake_service.start(state)
    monkeypatch.setattr("cli.task_view.FIRST_POLL_SECONDS", 0.01)
    monkeypatch.setenv("H4_SESSION_FILE", str(tmp_path_factory.mktemp("conf") / "s.json"))
    save_session(Session(state["url"], TOKEN, "admin"))
    yield state
    server.shutdown()
    server.server_close()


# --- session file ------------------------------------------------------------------------

def test_session_file_is_0600_in_a_0700_folder(tmp_path, monkeypatch):
    path = tmp_path / "config" / "h4backup" / "session.json"
    monkeypatch.setenv("H4_SESSION_FILE", str(path))
    old_umask = os.umask(0)  # the most permissive umask must not widen the modes
    try:
        save_session(Session("http://h:1", "secret-token", "admin"))
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_session() == Session("http://h:1", "secret-token", "admin")


def test_session_file_has_its_mode_before_it_is_renamed_into_place(tmp_path, monkeypatch):
    modes = []
    real_replace = os.replace

    def spy(source, target):
        modes.append(stat.S_IMODE(os.stat(source).st_mode))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", spy)
    save_session(Session("http://h:1", "t"), tmp_path / "s.json")
    assert modes == [0o600]
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


def test_missing_session_is_exit_code_3(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("H4_SESSION_FILE", str(tmp_path / "none.json"))
    assert main(["backup", "list"]) == errors.NOT_AUTHENTICATED
    assert "h4backup login" in capsys.readouterr().err


def test_logout_removes_the_session_file(fake, capsys):
    path = Path(os.environ["H4_SESSION_FILE"])
    assert main(["logout"]) == 0
    assert not path.exists()
    assert ("DELETE", "/sessions") in [(m, p) for m, p, _ in fake["requests"]]


# --- passwords never from argv -----------------------------------------------------------

def _all_parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _all_parsers(child)


def test_no_option_stores_a_password_value():
    for parser in _all_parsers(_parser()):
        for action in parser._actions:
            stores = action.nargs != 0 and action.option_strings and action.default is not (
                argparse.SUPPRESS)
            named_password = "password" in action.dest and not action.dest.endswith("file")
            assert not (stores and named_password), (parser.prog, action.option_strings)


@pytest.mark.parametrize("argv", [
    ["login", "--password", "hunter2"],
    ["backup", "create", "--password", "hunter2"],
    ["backup", "restore", BACKUP_ID, "--password", "hunter2"],
    ["backup", "verify", BACKUP_ID, "--password=hunter2"],
])
def test_password_arguments_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == errors.USAGE
    err = capsys.readouterr().err
    assert "--password-file" in err and "hunter2" not in err


def test_no_password_source_without_terminal_is_usage_error(fake, monkeypatch, capsys):
    monkeypatch.delenv("H4_BACKUP_PASSWORD", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["backup", "create"]) == errors.USAGE
    assert "--no-password" in capsys.readouterr().err
    assert fake["bodies"] == []


def test_password_file_first_line_is_sent_and_never_printed(fake, tmp_path, capsys):
    secret = tmp_path / "pw"
    secret.write_text("Tr0ub4dor&3\nsecond line\n")
    assert main(["backup", "create", "--wait", "--password-file", str(secret)]) == 0
    assert fake["bodies"] == [{"password": "Tr0ub4dor&3"}]
    captured = capsys.readouterr()
    assert "Tr0ub4dor" not in captured.out + captured.err


# --- output formats ----------------------------------------------------------------------

def test_json_mode_writes_only_json_lines_to_stdout(fake, capsys):
    assert main(["--json", "backup", "create", "--no-password", "--wait"]) == 0
    lines = capsys.readouterr().out.splitlines()
    parsed = [json.loads(line) for line in lines]
    assert [p["message_type"] for p in parsed] == ["status"] * 3 + ["summary"]
    assert [p["percent_done"] for p in parsed[:3]] == [0.0, 0.4, 1.0]
    assert parsed[-1]["state"] == "SUCCEEDED" and parsed[-1]["result"]["id"] == BACKUP_ID


def test_json_flag_is_accepted_after_the_subcommand(fake, capsys):
    assert main(["backup", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"id": BACKUP_ID, "generatedOn": 1,
                                                   "hash": GOOD_HASH}


def test_retention_shows_each_backup_newest_first_with_the_rules_that_keep_it(fake, capsys):
    assert main(["backup", "retention"]) == 0
    captured = capsys.readouterr()
    rows = [line.split() for line in captured.out.splitlines()[1:]]
    assert [(row[0], "DELETE" in row, "keep" in row) for row in rows] == [
        ("new", False, True), ("old", True, False)]
    assert "daily 2065-01-24, yearly 2065" in captured.out
    assert "keepDaily 7, keepYearly 2 (Europe/Berlin); 1 of 2" in captured.err


def test_labels_are_sent_with_a_new_backup_and_asked_of_the_listing(fake, capsys):
    assert main(["backup", "create", "--no-password", "--label", "env=prod",
                 "--label", "app=db=1"]) == 0
    assert fake["bodies"][-1] == {"labels": {"env": "prod", "app": "db=1"}}
    assert main(["backup", "list", "--label", "env=prod"]) == 0
    method, path, _headers = fake["requests"][-1]
    assert (method, path) == ("GET", "/backups?label=env%3Dprod")
    with pytest.raises(SystemExit):
        main(["backup", "list", "--label", "no-equals-sign"])


def test_output_helpers():
    out, err = io.StringIO(), io.StringIO()
    output = Output(json_lines=True, stdout=out, stderr=err)
    output.emit({"a": 1})
    output.data("for people only")
    output.note("a message")
    assert out.getvalue() == '{"a":1}\n' and err.getvalue() == "h4backup: a message\n"
    assert json_line({"x": "é"}).endswith("\n") and "\n" not in json_line({"x": "a\nb"})[:-1]
    assert format_table(("A", "BB"), [("1", "2")]) == ["A  BB", "1  2"]


def test_status_lines_only_when_progress_moves():
    out = io.StringIO()
    progress = TaskProgress(Output(True, out, io.StringIO()), "backup")
    for percent in (0, 0, 10, 10, 50):
        progress.update(task("RUNNING", percent))
    progress.close()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["progress"] for line in lines] == [0, 10, 50]
    assert set(status_line(task("RUNNING", 5), 1.0, None)) == {
        "message_type", "task_id", "state", "progress", "percent_done", "seconds_elapsed"}


def test_time_left_comes_from_the_percent_rate():
    now = [0.0]
    eta = PercentEta(clock=lambda: now[0])
    assert eta.observe(0) is None
    now[0] = 5.0
    assert eta.observe(0) is None  # queued: the clock starts when the percent moves
    now[0] = 7.0
    assert eta.observe(20) == pytest.approx(8.0)  # 20 % in 2 s -> 80 % in 8 s
    assert eta.observe(100) == 0.0


# --- exit codes --------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "code"), [
    (400, 1), (401, 3), (403, 3), (404, 4), (409, 1), (429, 1), (500, 5), (503, 5)])
def test_http_status_to_exit_code(status, code):
    assert errors.exit_code_for_status(status) == code


def test_unreachable_server_is_exit_code_5(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("H4_SESSION_FILE", str(tmp_path / "s.json"))
    save_session(Session("http://127.0.0.1:9", TOKEN))
    assert main(["task", "list"]) == errors.UNREACHABLE
    assert "cannot reach" in capsys.readouterr().err


def test_api_error_prints_code_and_msg(fake, capsys):
    save_session(Session(fake["url"], "expired-token"))
    assert main(["backup", "list"]) == errors.NOT_AUTHENTICATED
    assert "NotAuthenticated: Authentication required." in capsys.readouterr().err


def test_failed_task_is_exit_code_1_with_code_and_msg(fake, capsys):
    fake["tasks"][:] = [task("RUNNING", 0), task("FAILED", 30, {
        "args": [], "code": "SourceUnavailable", "msg": "Backup source tree is not readable"})]
    assert main(["backup", "create", "--no-password", "--wait"]) == errors.FAILED
    assert "SourceUnavailable: Backup source tree is not readable" in capsys.readouterr().err


def test_verify_mismatch_is_exit_code_1(fake, capsys):
    fake["part_b"] = True
    ended = {**task("SUCCEEDED", 100), "resultType": "VerifyInfo", "result": {
        "backupId": BACKUP_ID, "hashOk": False, "contentChecked": False, "files": 0,
        "bytes": 0}}
    fake["tasks"][:] = [task("RUNNING", 0), ended]
    assert main(["--json", "backup", "verify", BACKUP_ID, "--wait"]) == errors.FAILED
    assert fake["bodies"] == [{}]  # no password option: only the SHA-512 is checked
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["result_type"] == "VerifyInfo" and summary["result"]["hashOk"] is False


def test_missing_route_and_bad_arguments(fake, capsys):
    assert main(["backup", "verify", BACKUP_ID]) == errors.NOT_FOUND
    assert "does not offer verify" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["task", "show", "not-a-uuid"])
    assert exited.value.code == errors.USAGE


# --- downloads checked by SHA-512 --------------------------------------------------------

def _download(fake, folder: Path, verify: bool = True) -> dict:
    api = Api(fake["url"], TOKEN)
    return download(api, Output(True, io.StringIO(), io.StringIO()), BACKUP_ID,
                    Target(folder, None), verify)


def test_download_checks_catalog_and_header(fake, tmp_path):
    summary = _download(fake, tmp_path)
    path = tmp_path / f"{BACKUP_ID}.tar.zst"
    assert path.read_bytes() == CONTENT and summary["hash_checks"] == 2
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert plain_hex(summary["hash"]) == hashlib.sha512(CONTENT).hexdigest()


def test_tampered_stream_leaves_nothing(fake, tmp_path):
    fake["served"] = CONTENT[:1000] + bytes([CONTENT[1000] ^ 1]) + CONTENT[1001:]
    with pytest.raises(errors.ClientError) as failed:
        _download(fake, tmp_path)
    assert failed.value.exit_code == errors.FAILED and "mismatch" in str(failed.value)
    assert list(tmp_path.iterdir()) == []


def test_catalog_mismatch_fails_even_when_header_agrees(fake, tmp_path):
    fake["listed"] = vcda_hash("00" * 64)
    with pytest.raises(errors.ClientError):
        _download(fake, tmp_path)
    assert list(tmp_path.iterdir()) == []
    fake["listed"] = GOOD_HASH
    assert _download(fake, tmp_path, verify=False)["hash_checks"] == 1


def test_partial_file_is_resumed_with_a_range(fake, tmp_path):
    (tmp_path / f".{BACKUP_ID}.part").write_bytes(CONTENT[:120_000])
    summary = _download(fake, tmp_path)
    assert summary["resumed_from"] == 120_000
    assert (tmp_path / f"{BACKUP_ID}.tar.zst").read_bytes() == CONTENT
    ranges = [h.get("Range") for m, p, h in fake["requests"] if p == f"/backups/{BACKUP_ID}"]
    assert ranges == ["bytes=120000-"]


def test_wrong_partial_bytes_are_replaced_by_a_whole_download(fake, tmp_path):
    (tmp_path / f".{BACKUP_ID}.part").write_bytes(b"x" * 5000)
    summary = _download(fake, tmp_path)
    assert summary["resumed_from"] == 0
    assert (tmp_path / f"{BACKUP_ID}.tar.zst").read_bytes() == CONTENT
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{BACKUP_ID}.tar.zst"]


def test_download_command_refuses_to_overwrite_and_exits_1_on_mismatch(fake, tmp_path, capsys):
    target = tmp_path / "out.bin"
    target.write_bytes(b"keep me")
    assert main(["backup", "download", BACKUP_ID, "-o", str(target)]) == errors.USAGE
    assert target.read_bytes() == b"keep me"
    fake["served"] = CONTENT[::-1]
    assert main(["backup", "download", BACKUP_ID, "-o", str(target), "--force"]) == 1
    assert target.read_bytes() == b"keep me" and len(list(tmp_path.iterdir())) == 1


def test_alert_targets_are_set_from_the_command_line(fake, capsys):
    assert main(["alerts", "set", "--target", "https://hooks.example/a", "--target",
                 "http://10.0.0.2:9000/h", "--events", "task.failed,task.succeeded"]) == 0
    events = ["task.failed", "task.succeeded"]
    assert fake["bodies"][-1] == {"targets": [{"url": "https://hooks.example/a",
                                               "events": events},
                                              {"url": "http://10.0.0.2:9000/h",
                                               "events": events}],
                                  "overdueAfterSeconds": None}
    assert "2 target(s) set" in capsys.readouterr().err


def test_rekey_sends_the_old_and_the_new_key_from_files(fake, tmp_path, capsys):
    fake["part_b"] = True
    (tmp_path / "old").write_text("old-secret\n")
    (tmp_path / "new").write_text("new-secret\n")
    _, recipient = generate_x25519_identity()
    identity, _ = generate_x25519_identity()
    (tmp_path / "key.txt").write_text(f"# created: today\n{identity}\n")
    assert main(["backup", "rekey", BACKUP_ID, "--password-file", str(tmp_path / "old"),
                 "--new-password-file", str(tmp_path / "new")]) == errors.OK
    assert main(["backup", "rekey", BACKUP_ID, "--identity-file", str(tmp_path / "key.txt"),
                 "--new-recipient", recipient]) == errors.OK
    assert main(["backup", "copy", BACKUP_ID]) == errors.OK
    assert fake["bodies"] == [{"password": "old-secret", "newPassword": "new-secret"},
                              {"identity": identity, "newRecipients": [recipient]}, {}]
    assert "secret" not in capsys.readouterr().out


def test_rekey_without_a_new_key_is_a_usage_error(fake, tmp_path, monkeypatch):
    fake["part_b"] = True
    monkeypatch.delenv("H4_NEW_BACKUP_PASSWORD", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    (tmp_path / "old").write_text("old-secret\n")
    assert main(["backup", "rekey", BACKUP_ID, "--password-file",
                 str(tmp_path / "old")]) == errors.USAGE
    assert fake["bodies"] == []


def test_checks_set_sends_the_schedule(fake, capsys):
    fake["part_b"] = True
    assert main(["checks", "set", "--every", "86400", "--full"]) == errors.OK
    assert main(["checks", "set", "--off"]) == errors.OK
    assert fake["bodies"][-2:] == [
        {"enabled": True, "intervalSeconds": 86400, "cron": None, "full": True},
        {"enabled": False, "intervalSeconds": None, "cron": None, "full": False}]
