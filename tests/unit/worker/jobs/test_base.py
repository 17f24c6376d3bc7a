"""worker/jobs/base.py: the secret the API sealed for a task, opened; the listed backup a
restore or verify reads; the keys they read it with."""

from __future__ import annotations

import pytest

from common.backupfile.format.age import generate_x25519_identity
from common.errors import BackupNotFound, GeneralServerFailure, PasswordUnavailable
from common.tasks import new_task
from common.transit import StaticKeys, TransitSealer
from tests.unit.worker.conftest import make_settings
from tests.unit.worker.jobs.conftest import PASSWORD
from worker.context import WorkerContext
from worker.jobs.base import MAX_READ_WORK_FACTOR, listed_backup, opening_keys, secrets_of


def _other(ctx, **changes):
    fields = {"settings": ctx.settings, "store": ctx.store, "sealer": ctx.sealer,
              "storage": ctx.storage, "holder": "host:2", **changes}
    return WorkerContext(**fields)


# --- secrets_of ------------------------------------------------------------------------------

def test_secrets_of_opens_the_secret_the_api_sealed(ctx, reading_task):
    task = reading_task("verify", secret={"password": PASSWORD})
    assert secrets_of(ctx, task) == {"password": PASSWORD}


def test_secrets_of_a_task_given_no_secret_is_empty(ctx, reading_task):
    assert secrets_of(ctx, reading_task("verify")) == {}


def test_an_encrypted_backup_whose_sealed_password_is_gone_is_password_unavailable(
        ctx, backup_task):
    task = backup_task(secret={"password": PASSWORD})
    ctx.store.redis.delete(f"h4:task:{task.id}:secret")
    with pytest.raises(PasswordUnavailable):
        secrets_of(ctx, task)


def test_a_backup_to_recipients_needs_no_sealed_secret(ctx, backup_task):
    _, recipient = generate_x25519_identity()
    assert secrets_of(ctx, backup_task(kind="scheduled", recipients=[recipient])) == {}


def test_a_secret_sealed_under_a_key_this_worker_lacks_is_password_unavailable(
        ctx, reading_task):
    task = reading_task("verify", secret={"password": PASSWORD})
    other = _other(ctx, sealer=TransitSealer(StaticKeys((b"o" * 32,))))
    with pytest.raises(PasswordUnavailable):
        secrets_of(other, task)


def test_a_sealed_secret_that_is_not_json_is_a_general_server_failure(ctx):
    row = new_task("admin", "verify", "backup", "b1")
    ctx.store.create_task(row, sealed_password=ctx.sealer.seal("password=x", row.id))
    with pytest.raises(GeneralServerFailure):
        secrets_of(ctx, ctx.store.get_task(row.id))


def test_a_sealed_secret_that_is_json_but_no_object_is_a_general_server_failure(ctx):
    row = new_task("admin", "verify", "backup", "b1")
    ctx.store.create_task(row, sealed_password=ctx.sealer.seal('"just a string"', row.id))
    with pytest.raises(GeneralServerFailure):
        secrets_of(ctx, ctx.store.get_task(row.id))


# --- listed_backup ---------------------------------------------------------------------------

def test_listed_backup_of_a_backup_not_in_the_catalogue_raises_backup_not_found(
        ctx, reading_task):
    with pytest.raises(BackupNotFound):
        listed_backup(ctx, reading_task("verify", backup_id="never-stored"))


def test_listed_backup_is_the_catalogue_row(ctx, reading_task, backed_up):
    finish = backed_up()
    assert listed_backup(ctx, reading_task("verify"))["hash"] == finish.result["hash"]


# --- opening_keys ----------------------------------------------------------------------------

def test_opening_keys_hand_a_sealed_identity_over_as_the_only_identity(ctx, reading_task):
    identity, _ = generate_x25519_identity()
    keys = opening_keys(ctx, reading_task("verify", secret={"identity": identity}))
    assert (keys["passphrase"], keys["identities"]) == (None, (identity,))


def test_reading_may_cost_the_read_cap_even_when_backups_are_written_cheaper(ctx, reading_task):
    """A backup written before the work factor was lowered must still open."""
    assert opening_keys(ctx, reading_task("verify"))["max_work_factor"] == MAX_READ_WORK_FACTOR


def test_a_backup_written_above_the_read_cap_can_still_be_read(ctx, reading_task, tmp_path):
    dearer = _other(ctx, settings=make_settings(tmp_path, H4_SCRYPT_WORK_FACTOR="22"))
    assert opening_keys(dearer, reading_task("verify"))["max_work_factor"] == 22
