"""The h4backup client run as its users run it: a subprocess against the real service."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.integration.harness import REPO

pytestmark = pytest.mark.integration

BACKUP_PASSWORD = "Cli-Backup-Pa55phrase!q7"


class Cli:
    """Runs `python -m cli.main` with its own session file; no output may hold a password."""

    def __init__(self, service, folder: Path) -> None:
        self.service, self.folder = service, folder
        self.session = folder / "config" / "session.json"
        self.password_file = folder / "backup-password"
        self.password_file.write_text(BACKUP_PASSWORD + "\n")

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("H4_")}
        return {**env, "H4_SESSION_FILE": str(self.session),
                "H4_PASSWORD": self.service.admin_password, **extra}

    def __call__(self, *args: str, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> subprocess.CompletedProcess:
        run = subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=cwd or REPO,
                             env=env or self.env(), capture_output=True, text=True,
                             timeout=180, stdin=subprocess.DEVNULL)
        for secret in (BACKUP_PASSWORD, self.service.admin_password):
            assert secret not in run.stdout + run.stderr, args
        return run

    def json_lines(self, *args: str) -> list[dict]:
        run = self("--json", *args)
        assert run.returncode == 0, run.stderr
        return [json.loads(line) for line in run.stdout.splitlines()]


@pytest.fixture(scope="module")
def backend():
    """The client only speaks HTTP: where the service keeps its backups is the backup and
    restore suites' business, run on both backends there."""
    return "folder"


@pytest.fixture(scope="module")
def cli(service, tmp_path_factory):
    client = Cli(service, tmp_path_factory.mktemp("cli"))
    login = client("login", "--url", service.url)
    assert login.returncode == 0, login.stderr
    return client


@pytest.fixture(scope="module")
def created(cli):
    """An encrypted backup made with `backup create --wait`: its id and listed hash."""
    run = cli("backup", "create", "--wait", "--password-file", str(cli.password_file))
    assert run.returncode == 0, run.stdout + run.stderr
    listed = {b["id"]: b["hash"] for b in cli.json_lines("backup", "list")}
    (backup_id,) = [i for i in listed if i in run.stdout]
    return {"id": backup_id, "hash": listed[backup_id], "run": run}


def sha512_vcda(path: Path) -> str:
    digest = hashlib.sha512(path.read_bytes()).hexdigest().upper()
    return "SHA-512:" + ":".join(digest[i:i + 2] for i in range(0, 128, 2))


def test_login_keeps_the_token_private(cli):
    assert stat.S_IMODE(cli.session.stat().st_mode) == 0o600
    assert stat.S_IMODE(cli.session.parent.stat().st_mode) == 0o700
    assert set(json.loads(cli.session.read_text())) == {"url", "token", "user"}


def test_without_a_session_file_exit_code_is_3(cli, tmp_path):
    run = cli("backup", "list", env=cli.env(H4_SESSION_FILE=str(tmp_path / "none.json")))
    assert run.returncode == 3 and "h4backup login" in run.stderr and run.stdout == ""


def test_wrong_login_password_exit_code_is_3(cli, tmp_path):
    env = cli.env(H4_SESSION_FILE=str(tmp_path / "s.json"), H4_PASSWORD="wrong-password")
    run = cli("login", "--url", cli.service.url, env=env)
    assert run.returncode == 3 and "NotAuthenticated" in run.stderr
    assert not (tmp_path / "s.json").exists()


def test_password_as_argument_is_refused(cli):
    run = cli("backup", "create", "--password", BACKUP_PASSWORD.upper())
    assert run.returncode == 2 and BACKUP_PASSWORD.upper() not in run.stderr


def test_create_wait_shows_progress_and_the_result(created):
    run = created["run"]
    assert "100%" in run.stderr and "SUCCEEDED" in run.stdout
    assert created["hash"] in run.stdout and created["hash"].startswith("SHA-512:")


def test_list_shows_the_backup(cli, created):
    run = cli("backup", "list")
    assert run.returncode == 0 and created["id"] in run.stdout


def test_download_verify_writes_the_listed_bytes(cli, created, tmp_path):
    run = cli("backup", "download", created["id"], "--verify", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    (path,) = tmp_path.iterdir()
    assert path.name == f"{created['id']}.tar.zst.age" and run.stdout.strip() == str(path)
    assert sha512_vcda(path) == created["hash"]


def test_json_output_parses_line_by_line(cli):
    lines = cli.json_lines("backup", "create", "--no-password", "--wait")
    assert {line["message_type"] for line in lines[:-1]} == {"status"}
    fractions = [line["percent_done"] for line in lines[:-1]]
    assert fractions == sorted(fractions) and all(0 <= f <= 1 for f in fractions)
    summary = lines[-1]
    assert (summary["message_type"], summary["state"]) == ("summary", "SUCCEEDED")
    assert summary["result_type"] == "BackupInfo" and summary["bytes_stored"] > 0
    tasks = cli.json_lines("task", "list", "--limit", "5")
    assert summary["task_id"] in [t["id"] for t in tasks]
    assert cli.json_lines("task", "show", summary["task_id"])[0]["state"] == "SUCCEEDED"


def test_tampered_file_fails_download_and_leaves_nothing(cli, tmp_path):
    backup_id = str(uuid.uuid4())
    assert cli("backup", "create", "--id", backup_id, "--no-password", "--wait").returncode == 0
    assert backup_id in [b["id"] for b in cli.json_lines("backup", "list")]
    (stored,) = [n for n in cli.service.stored_names() if n.startswith(f"{backup_id}.")]
    data = bytearray(cli.service.stored_bytes(stored))
    data[len(data) // 2] ^= 0xFF
    cli.service.overwrite_stored(stored, bytes(data))
    out = tmp_path / "out"
    out.mkdir()
    run = cli("backup", "download", backup_id, "--verify", "-o", str(out / "copy"))
    assert run.returncode == 1 and "SHA-512 mismatch" in run.stderr
    assert list(out.iterdir()) == []


def test_delete_wait_then_the_backup_is_gone(cli, tmp_path):
    lines = cli.json_lines("backup", "create", "--no-password", "--wait")
    backup_id = lines[-1]["result"]["id"]
    run = cli("backup", "delete", backup_id, "--wait")
    assert run.returncode == 0, run.stderr
    assert backup_id not in cli("backup", "list").stdout
    missing = cli("backup", "download", backup_id, "-o", str(tmp_path / "never"))
    assert missing.returncode == 4 and "BackupNotFound" in missing.stderr
    assert list(tmp_path.iterdir()) == []


def test_unknown_task_exit_code_is_4(cli):
    run = cli("task", "show", str(uuid.uuid4()))
    assert run.returncode == 4 and "TaskNotFound" in run.stderr


def _part_b_or_skip(run: subprocess.CompletedProcess, action: str) -> None:
    if run.returncode == 4 and f"does not offer {action}" in run.stderr:
        pytest.skip(f"this server has no POST /backups/ID/{action} route yet: {run.stderr}")


def test_verify_with_password_reads_the_whole_backup(cli, created):
    run = cli("--json", "backup", "verify", created["id"], "--wait",
              "--password-file", str(cli.password_file))
    _part_b_or_skip(run, "verify")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout.splitlines()[-1])
    assert summary["result_type"] == "VerifyInfo", summary
    assert summary["result"]["hashOk"] is True and summary["result"]["contentChecked"] is True


def test_verify_without_password_checks_the_hash_only(cli, created):
    run = cli("--json", "backup", "verify", created["id"], "--wait")
    _part_b_or_skip(run, "verify")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])["result"]
    assert (result["hashOk"], result["contentChecked"]) == (True, False)


def test_verify_with_a_wrong_password_exit_code_is_1(cli, created, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    run = cli("backup", "verify", created["id"], "--wait", "--password-file", str(wrong))
    _part_b_or_skip(run, "verify")
    assert run.returncode == 1 and "FAILED: WrongPassword: " in run.stderr


def test_restore_writes_the_files(cli, created, source_tree):
    run = cli("--json", "backup", "restore", created["id"], "--wait",
              "--password-file", str(cli.password_file))
    _part_b_or_skip(run, "restore")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])["result"]
    assert result["backupId"] == created["id"] and result["files"] > 300
    assert Path(result["path"]).is_dir()


def test_logout_ends_the_session(cli, tmp_path):
    env = cli.env(H4_SESSION_FILE=str(tmp_path / "s.json"))
    assert cli("login", "--url", cli.service.url, env=env).returncode == 0
    token = json.loads((tmp_path / "s.json").read_text())["token"]
    assert cli("logout", env=env).returncode == 0
    assert not (tmp_path / "s.json").exists()
    import requests

    again = requests.get(f"{cli.service.url}/sessions", headers={"X-VCAV-Auth": token})
    assert again.status_code == 401
