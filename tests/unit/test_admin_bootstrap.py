"""The administrator made from the settings by every API process that starts."""

from __future__ import annotations

from common.bootstrap import ensure_admin


def test_a_second_process_starting_at_once_keeps_the_first_ones_administrator(
        store, settings, monkeypatch):
    ensure_admin(store, settings)
    first = store.get_user("admin")
    # The second process read the user before the first had written it.
    real_get = store.get_user
    calls = iter([None])
    monkeypatch.setattr(store, "get_user", lambda name: next(calls, None) or real_get(name))
    ensure_admin(store, settings)
    assert real_get("admin")["generation"] == first["generation"]


def test_a_changed_password_in_the_settings_replaces_the_administrators(store, settings):
    ensure_admin(store, settings)
    first = store.get_user("admin")
    store.put_user("admin", "scrypt$1$1$1$00$00", ["ADMINISTRATORS"])  # not the settings'
    ensure_admin(store, settings)
    assert store.get_user("admin")["password"] not in (first["password"], "scrypt$1$1$1$00$00")
