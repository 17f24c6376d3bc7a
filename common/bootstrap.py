"""What a process does once at start: the transit key, the administrator, the config snapshot."""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path

from common.backupfile.io.folder import FolderStorage
from common.backupfile.io.mirrored import MirroredStorage
from common.backupfile.io.storage import BackupStorage
from common.config import Settings
from common.privatefiles import create_once
from common.secrecy import check_password, hash_password
from common.storage_settings import S3Settings
from common.store import Store
from common.transit import KeyFile, KeySource, StaticKeys, TransitSealer, create_key_file

log = logging.getLogger("h4backup")

ADMIN_ROLES = ["ADMINISTRATORS"]
USER_ROLES = ["EVERYONE"]


def transit_key_file(settings: Settings) -> Path:
    """The keyring file: H4_TRANSIT_KEY_FILE, or the one generated into the data folder."""
    return settings.transit_key_file or settings.data_dir / "transit.key"


def transit_keys(settings: Settings) -> KeySource:
    """The keys sealing passwords in transit; every API and worker process must share them."""
    if settings.transit_keys:
        return StaticKeys(settings.transit_keys)
    path = transit_key_file(settings)
    if settings.transit_key_file is None:
        create_key_file(path)
    return KeyFile(path)


def transit_sealer(settings: Settings) -> TransitSealer:
    return TransitSealer(transit_keys(settings))


def backup_storage(settings: Settings) -> BackupStorage:
    """Where this service keeps its backup files: the folder or the object store, and with a
    replica configured, both copies behind one interface (io/mirrored.py)."""
    primary = (FolderStorage(settings.backup_dir) if settings.s3 is None
               else _s3_storage(settings.s3))
    replica = settings.replica
    if replica is None:
        return primary
    second = FolderStorage(replica.folder) if replica.s3 is None else _s3_storage(replica.s3)
    return MirroredStorage(primary, second)


def _s3_storage(s3: S3Settings) -> BackupStorage:
    # Imported here: boto3 takes a while to load, and a folder deployment never needs it.
    from common.backupfile.io.s3 import S3Options, S3Storage

    return S3Storage(S3Options(
        bucket=s3.bucket, endpoint=s3.endpoint, prefix=s3.prefix, region=s3.region,
        access_key=s3.access_key, secret_key=s3.secret_key, lock_mode=s3.lock_mode,
        lock_days=s3.lock_days))


def admin_password_file(settings: Settings) -> Path:
    return settings.data_dir / "admin-password"


def admin_password(settings: Settings) -> str:
    """The configured administrator password, or one generated once into the data folder."""
    if settings.admin_password:
        return settings.admin_password
    path = admin_password_file(settings)
    if create_once(path, secrets.token_urlsafe(18) + "\n"):
        log.info("generated an administrator password into %s", path)
    return path.read_text().strip()


def ensure_admin(store: Store, settings: Settings) -> None:
    """Create the administrator, or reset its password when the configured one changed."""
    password = admin_password(settings)

    def as_configured() -> bool:
        user = store.get_user(settings.admin_user)
        return bool(user and check_password(password, user["password"])
                    and user["roles"] == ADMIN_ROLES)

    if as_configured() or store.add_user(settings.admin_user, hash_password(password),
                                         ADMIN_ROLES):
        return
    # Changed settings, or another process created it a moment ago (then it is as configured).
    if not as_configured():
        store.put_user(settings.admin_user, hash_password(password), ADMIN_ROLES)


def write_config_snapshot(settings: Settings) -> None:
    """The service's own configuration, without secrets: the default backup source."""
    settings.config_dir.mkdir(parents=True, exist_ok=True)
    snapshot = {
        "backupDir": str(settings.backup_dir), "restoreDir": str(settings.restore_dir),
        "sources": {s.name: str(s.path) for s in settings.sources},
        "adminUser": settings.admin_user, "port": settings.port,
        "backupQuota": settings.backup_quota, "zstdLevel": settings.zstd_level,
    }
    target = settings.config_dir / "settings.json"
    temporary = target.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(snapshot, indent=2, sort_keys=True) + "\n")
    temporary.replace(target)
