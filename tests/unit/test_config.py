import subprocess
import sys

import pytest

from common.config import SettingsError, load_settings, parse_sources


def test_defaults_back_up_the_service_configuration(tmp_path):
    settings = load_settings({"H4_DATA_DIR": str(tmp_path)})
    assert [(s.name, s.path) for s in settings.sources] == [("config", tmp_path / "config")]
    assert settings.port == 8046 and settings.backup_dir == tmp_path / "backups"
    assert settings.backup_quota == 24 and settings.redis_url is None
    assert settings.worker_nice == 10


def test_workers_may_run_at_any_nice_level_from_0_to_19(tmp_path):
    levels = [load_settings({"H4_DATA_DIR": str(tmp_path), "H4_WORKER_NICE": level}).worker_nice
              for level in ("0", "19")]
    assert levels == [0, 19]


def test_sources_are_named_absolute_paths():
    sources = parse_sources("config=/etc/app, data=/var/lib/app")
    assert [(s.name, str(s.path)) for s in sources] == [("config", "/etc/app"),
                                                         ("data", "/var/lib/app")]


@pytest.mark.parametrize("env, named", [
    ({"H4_SOURCES": "config"}, "H4_SOURCES"),
    ({"H4_SOURCES": "a=relative/path"}, "H4_SOURCES"),
    ({"H4_SOURCES": "a=/x,a=/y"}, "H4_SOURCES"),
    ({"H4_SOURCES": "../up=/x"}, "H4_SOURCES"),
    ({"H4_PORT": "eighty"}, "H4_PORT"),
    ({"H4_PORT": "70000"}, "H4_PORT"),
    ({"H4_REDIS_URL": "http://localhost"}, "H4_REDIS_URL"),
    ({"H4_TRANSIT_KEY": "short"}, "H4_TRANSIT_KEY"),
    ({"H4_DEBUG": "maybe"}, "H4_DEBUG"),
    ({"H4_LOG_LEVEL": "LOUD"}, "H4_LOG_LEVEL"),
    ({"H4_ADMIN_PASSWORD_FILE": "/nonexistent/secret"}, "H4_ADMIN_PASSWORD_FILE"),
    ({"H4_WORKER_NICE": "20"}, "H4_WORKER_NICE"),
    ({"H4_WORKER_NICE": "-1"}, "H4_WORKER_NICE"),
    ({"H4_WORKER_NICE": "low"}, "H4_WORKER_NICE"),
])
def test_bad_settings_fail_naming_the_setting(tmp_path, env, named):
    with pytest.raises(SettingsError) as caught:
        load_settings({"H4_DATA_DIR": str(tmp_path), **env})
    assert caught.value.name == named and named in str(caught.value)


def test_secrets_can_come_from_files(tmp_path):
    (tmp_path / "admin.txt").write_text("from-a-file\n")
    settings = load_settings({"H4_DATA_DIR": str(tmp_path),
                              "H4_ADMIN_PASSWORD_FILE": str(tmp_path / "admin.txt")})
    assert settings.admin_password == "from-a-file"


def test_a_bad_setting_stops_the_command_with_its_name(tmp_path):
    run = subprocess.run([sys.executable, "-m", "cli.main", "worker"], capture_output=True,
                         text=True, env={"H4_DATA_DIR": str(tmp_path), "H4_PORT": "x",
                                         "PATH": "/usr/bin:/bin"}, timeout=60)
    assert run.returncode == 2 and "H4_PORT" in run.stderr and "Traceback" not in run.stderr


def test_serve_without_redis_server_says_how_to_get_one(tmp_path, monkeypatch):
    from cli.server import serve

    monkeypatch.setattr(serve.shutil, "which", lambda _name: None)
    with pytest.raises(SystemExit) as stopped:
        serve.start_private_redis(load_settings({"H4_DATA_DIR": str(tmp_path)}))
    assert "apt-get install redis-server" in str(stopped.value.code)
