"""H4_REPLICA: where the second copy of each backup goes, checked at start."""

import pytest

from common.backupfile.io.folder import FolderStorage
from common.backupfile.io.mirrored import MirroredStorage
from common.bootstrap import backup_storage
from common.config import load_settings
from common.envvars import SettingsError


def _settings(tmp_path, **env):
    return load_settings({"H4_DATA_DIR": str(tmp_path / "data"), **env})


def test_no_replica_by_default(tmp_path):
    settings = _settings(tmp_path)
    assert settings.replica is None
    assert isinstance(backup_storage(settings), FolderStorage)


def test_a_replica_folder_mirrors_the_primary(tmp_path):
    settings = _settings(tmp_path, H4_REPLICA="folder", H4_REPLICA_DIR=str(tmp_path / "r"))
    storage = backup_storage(settings)
    assert isinstance(storage, MirroredStorage)
    assert isinstance(storage.primary, FolderStorage)
    assert storage.replica.location == str(tmp_path / "r")


def test_a_replica_bucket_takes_its_own_variables(tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "a").write_text("replica-access\n")
    (keys / "s").write_text("replica-secret\n")
    settings = _settings(tmp_path, H4_REPLICA="s3", H4_REPLICA_S3_BUCKET="second-copies",
                         H4_REPLICA_S3_ENDPOINT="http://127.0.0.1:9",
                         H4_REPLICA_S3_ACCESS_KEY_FILE=str(keys / "a"),
                         H4_REPLICA_S3_SECRET_KEY_FILE=str(keys / "s"),
                         AWS_ACCESS_KEY_ID="primary-only", AWS_SECRET_ACCESS_KEY="primary-only")
    s3 = settings.replica.s3
    assert (s3.bucket, s3.endpoint, s3.access_key) == (
        "second-copies", "http://127.0.0.1:9", "replica-access")


@pytest.mark.parametrize("env, name", [
    ({"H4_REPLICA": "tape"}, "H4_REPLICA"),
    ({"H4_REPLICA": "folder"}, "H4_REPLICA_DIR"),
    ({"H4_REPLICA": "folder", "H4_REPLICA_DIR": "relative/path"}, "H4_REPLICA_DIR"),
    ({"H4_REPLICA": "s3", "H4_REPLICA_S3_BUCKET": "No_Such"}, "H4_REPLICA_S3_BUCKET"),
    ({"H4_REPLICA": "s3", "H4_REPLICA_S3_BUCKET": "ok-bucket",
      "H4_REPLICA_S3_LOCK_MODE": "GOVERNANCE"}, "H4_REPLICA_S3_LOCK_DAYS"),
])
def test_a_bad_replica_setting_names_its_variable(tmp_path, env, name):
    with pytest.raises(SettingsError) as refused:
        _settings(tmp_path, **env)
    assert name in str(refused.value)
