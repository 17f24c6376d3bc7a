"""The transit keyring: sealing, opening, rotation without a restart."""

from __future__ import annotations

import stat

import pytest

from common.transit import (
    KeyFile,
    StaticKeys,
    TransitSealer,
    create_key_file,
    parse_keyring,
    rotate_key_file,
)


@pytest.fixture
def keyring(tmp_path):
    path = tmp_path / "transit.key"
    create_key_file(path)
    return path


def test_a_sealed_password_opens_for_its_task_only(keyring):
    sealer = TransitSealer(KeyFile(keyring))
    sealed = sealer.seal("Pa$$w0rD!", "task-1")
    assert sealer.open(sealed, "task-1") == "Pa$$w0rD!"
    with pytest.raises(ValueError):
        sealer.open(sealed, "task-2")


def test_the_keyring_file_is_private(keyring):
    rotate_key_file(keyring)
    assert stat.S_IMODE(keyring.stat().st_mode) == 0o600


def test_after_one_rotation_older_seals_still_open_and_new_ones_use_the_new_key(keyring):
    sealer = TransitSealer(KeyFile(keyring))  # one object, as in a running process
    before = sealer.seal("old", "t")
    rotate_key_file(keyring)
    after = sealer.seal("new", "t")
    assert sealer.open(before, "t") == "old" and sealer.open(after, "t") == "new"
    only_new_key = TransitSealer(StaticKeys(parse_keyring(keyring.read_text())[:1]))
    assert only_new_key.open(after, "t") == "new"


def test_after_two_rotations_the_oldest_seals_open_nowhere(keyring):
    sealer = TransitSealer(KeyFile(keyring))
    oldest = sealer.seal("old", "t")
    rotate_key_file(keyring)
    rotate_key_file(keyring)
    with pytest.raises(ValueError, match="does not hold"):
        sealer.open(oldest, "t")


def test_a_processes_sealer_follows_the_file_without_a_restart(keyring):
    sealer = TransitSealer(KeyFile(keyring))
    first = sealer.seal("x", "t")
    rotate_key_file(keyring)
    second = sealer.seal("x", "t")
    assert first[:12] != second[:12]  # format byte and key id differ: a new key sealed it


@pytest.mark.parametrize("text", ["", "not base64 at all", "c2hvcnQ"])
def test_a_bad_keyring_is_refused(text):
    with pytest.raises(ValueError):
        parse_keyring(text)


def test_several_keys_may_be_given_with_commas():
    one, two = "a" * 43, "b" * 43
    assert len(parse_keyring(f"{one},{two}")) == 2
