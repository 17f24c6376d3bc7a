"""GFS retention on a simulated calendar, checked against a reference written another way."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from common.retention import Policy, decide
from tests.conftest import login

BERLIN = ZoneInfo("Europe/Berlin")


def _backup(number: int, when: datetime, kind: str = "scheduled") -> dict:
    return {"id": f"b{number:05d}", "generatedOn": int(when.timestamp() * 1000), "kind": kind}


def _daily(days: int, start: datetime) -> list[dict]:
    return [_backup(n, start + timedelta(days=n)) for n in range(days)]


def _reference(backups: list[dict], counts: dict[str, int], zone: ZoneInfo) -> set[str]:
    """For each rule, the N most recent periods holding a scheduled backup, and the newest
    backup of each; keepLast, the N newest; the union of all."""
    scheduled = [b for b in backups if b["kind"] == "scheduled"]
    period_of = {
        "keepHourly": lambda t: (t.year, t.month, t.day, t.hour),
        "keepDaily": lambda t: (t.year, t.month, t.day),
        "keepWeekly": lambda t: tuple(t.isocalendar())[:2],
        "keepMonthly": lambda t: (t.year, t.month),
        "keepYearly": lambda t: (t.year,),
    }
    by_time = sorted(scheduled, key=lambda b: b["generatedOn"])
    kept = {b["id"] for b in by_time[::-1][:counts.get("keepLast", 0)]}
    for rule, period in period_of.items():
        newest_in: dict[tuple, dict] = {}
        for backup in by_time:  # later ones overwrite: the newest of each period stays
            newest_in[period(datetime.fromtimestamp(backup["generatedOn"] / 1000, zone))] = backup
        for key in sorted(newest_in, reverse=True)[:counts.get(rule, 0)]:
            kept.add(newest_in[key]["id"])
    return kept


def _kept(backups: list[dict], counts: dict[str, int], zone: str = "UTC") -> set[str]:
    return {d.backup["id"] for d in decide(backups, Policy(counts, zone)) if d.keep}


GFS = {"keepDaily": 7, "keepWeekly": 4, "keepMonthly": 12, "keepYearly": 2}


def test_two_years_of_daily_backups_keep_exactly_the_reference_set():
    backups = _daily(730, datetime(2024, 12, 7, 2, 30, tzinfo=BERLIN))
    kept = _kept(backups, GFS, "Europe/Berlin")
    assert kept == _reference(backups, GFS, BERLIN)
    # The newest is Sunday 2026-12-06. 7 days (11-30 to 12-06); 4 weeks, by their Sundays:
    # 12-06 kept already, then 11-29, 11-22, 11-15; 12 months, by their last days: December's
    # and November's kept already, then 10 more back to January; 2 years: 2026's kept
    # already, then 2025-12-31. 7 + 3 + 10 + 1.
    assert len(kept) == 21
    newest_of_2025 = max((b for b in backups if b["generatedOn"] < datetime(
        2026, 1, 1, tzinfo=BERLIN).timestamp() * 1000), key=lambda b: b["generatedOn"])
    assert newest_of_2025["id"] in kept


@pytest.mark.parametrize("counts", [
    {"keepLast": 3}, {"keepHourly": 30, "keepLast": 2}, {"keepWeekly": 9},
    {"keepMonthly": 5, "keepYearly": 3}, {"keepDaily": 400},
])
def test_irregular_times_in_a_zone_with_summer_time_match_the_reference(counts):
    start, backups = datetime(2025, 3, 1, tzinfo=BERLIN), []
    for number in range(900):  # every 7 h 13 min: hours, days and weeks fall unevenly
        backups.append(_backup(number, start + timedelta(minutes=433 * number)))
    assert _kept(backups, counts, "Europe/Berlin") == _reference(backups, counts, BERLIN)


def test_periods_are_counted_in_the_policys_zone():
    # 23:30 UTC on two days is 00:30 the next day in Berlin: the same two days either way,
    # but 22:30 and 23:30 UTC on one day fall on two days in Berlin.
    late = [_backup(1, datetime(2026, 1, 10, 22, 30, tzinfo=ZoneInfo("UTC"))),
            _backup(2, datetime(2026, 1, 10, 23, 30, tzinfo=ZoneInfo("UTC")))]
    assert _kept(late, {"keepDaily": 5}, "UTC") == {"b00002"}
    assert _kept(late, {"keepDaily": 5}, "Europe/Berlin") == {"b00001", "b00002"}


def test_manual_imported_and_locked_backups_are_never_deleted():
    backups = _daily(30, datetime(2026, 1, 1, 3, tzinfo=BERLIN))
    backups += [_backup(90, datetime(2025, 1, 1, tzinfo=BERLIN), "manual"),
                _backup(91, datetime(2025, 1, 2, tzinfo=BERLIN), "imported")]
    decisions = decide(backups, Policy({"keepLast": 2}), locked=lambda b: b["id"] == "b00003")
    kept = {d.backup["id"]: d.reasons for d in decisions if d.keep}
    assert set(kept) == {"b00029", "b00028", "b00090", "b00091", "b00003"}
    assert kept["b00003"] == ("under object lock",)
    assert kept["b00029"] == ("last 1",)
    assert [d.backup["generatedOn"] for d in decisions] == sorted(
        (b["generatedOn"] for b in backups), reverse=True)


def test_a_backup_kept_by_several_rules_names_them_all():
    backups = _daily(3, datetime(2026, 5, 1, 12, tzinfo=ZoneInfo("UTC")))
    newest = decide(backups, Policy({"keepLast": 1, "keepDaily": 1, "keepYearly": 1}))[0]
    assert newest.reasons == ("last 1", "daily 2026-05-03", "yearly 2026")


def test_the_newest_scheduled_backup_is_kept_whatever_the_rules():
    backups = _daily(3, datetime(2026, 5, 1, tzinfo=ZoneInfo("UTC")))
    assert _kept(backups, {}) == {"b00002"}


def test_the_legacy_keep_is_keep_last_and_no_rule_at_all_keeps_seven():
    assert Policy.from_schedule({"keep": 4}).counts == {"keepLast": 4}
    assert Policy.from_schedule({}).counts == {"keepLast": 7}
    policy = Policy.from_schedule({"keep": 4, "keepDaily": 3, "timeZone": "Europe/Berlin"})
    assert (policy.counts, policy.zone) == ({"keepLast": 4, "keepDaily": 3}, "Europe/Berlin")


def _list(store, backup_id: str, generated_on: int, kind: str) -> None:
    store.redis.hset(f"h4:backup:{backup_id}", mapping={
        "id": backup_id, "generatedOn": generated_on, "kind": kind, "hash": "SHA-512:00",
        "file": f"{backup_id}.tar.zst", "size": 1})
    store.redis.zadd("h4:backups", {backup_id: generated_on})


def test_the_schedule_takes_keep_rules_and_shows_keep_as_keep_last(client):
    headers = login(client)
    config = {"cron": "30 2 * * *", "keepDaily": 7, "keepWeekly": 4, "keepMonthly": 12,
              "keepYearly": 2, "timeZone": "Europe/Berlin"}
    assert client.put("/backups/config", json=config, headers=headers).status_code == 200
    shown = client.get("/backups/config", headers=headers).get_json()
    assert {k: shown[k] for k in config} == config
    assert (shown["keep"], shown["keepLast"]) == (None, 0)
    legacy = client.put("/backups/config", json={"cron": "* * * * *", "keep": 3},
                        headers=headers).get_json()
    assert (legacy["keep"], legacy["keepLast"], legacy["timeZone"]) == (3, 3, "UTC")
    for bad in ({"cron": "* * * * *", "timeZone": "Mars/Olympus"},
                {"cron": "* * * * *", "keep": 3, "keepLast": 4},
                {"cron": "* * * * *", "keepDaily": -1}):
        assert client.put("/backups/config", json=bad, headers=headers).status_code == 400, bad


def test_the_preview_lists_what_retention_would_delete_and_deletes_nothing(client, store):
    headers = login(client)
    client.put("/backups/config", json={"cron": "* * * * *", "keepLast": 2}, headers=headers)
    day = 86_400_000
    for n in range(1, 5):
        _list(store, f"s{n}", n * day, "scheduled")
    _list(store, "m1", 0, "manual")
    preview = client.get("/backups/config/retention-preview", headers=headers)
    assert preview.status_code == 200
    body = preview.get_json()
    assert [d["id"] for d in body["delete"]] == ["s2", "s1"]
    assert [(d["id"], d["reasons"]) for d in body["keep"]] == [
        ("s4", ["last 1"]), ("s3", ["last 2"]),
        ("m1", ["manual backups are never deleted by retention"])]
    assert (body["keepRules"], body["timeZone"]) == ({"keepLast": 2}, "UTC")
    assert store.redis.zcard("h4:backups") == 5


def test_the_real_run_deletes_exactly_what_the_preview_listed(app, client, store):
    from tests.unit.worker.test_schedule import _stored
    from worker.schedule import prune

    headers = login(client)
    rules = {"cron": "0 3 * * *", "keepDaily": 5, "keepWeekly": 3, "keepMonthly": 2,
             "timeZone": "America/New_York"}
    client.put("/backups/config", json=rules, headers=headers)
    storage = app.extensions["h4"].storage
    start = datetime(2026, 1, 1, 3, tzinfo=ZoneInfo("America/New_York"))
    for number, backup in enumerate(_daily(120, start)):
        _stored(store, storage, backup["id"], backup["generatedOn"],
                "manual" if number % 17 == 0 else "scheduled")
    preview = client.get("/backups/config/retention-preview", headers=headers).get_json()
    expected = [d["id"] for d in preview["delete"]]
    assert len(expected) > 80
    assert prune(store, storage, Policy.from_schedule(store.get_schedule())) == expected
    assert sorted(b["id"] for b in store.list_backups()) == sorted(
        d["id"] for d in preview["keep"])
