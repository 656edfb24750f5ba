"""An edge upgraded from watchlist alerts keyed by fact to alerts keyed by visit keeps its decided holds decided.

The old store is written as the previous version wrote it (its schema, its facts, its rule's trigger: the event id
of the watchlist_matched fact); the upgraded edge then starts for real, migrates, and replays the last day's facts.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import SITE, write_config

from edge import publisher
from edge.alert_store import AlertStore
from edge.alerts import Severity
from edge.brokers import free_port
from edge.config import load_settings
from edge.events import Event, WatchlistHoldDecided, WatchlistMatched
from edge.ids import new_id
from edge.migrations import MIGRATIONS, _initial, _lean_alert_path
from edge.rules.base import AlertDraft
from edge.service import EdgeService
from edge.store import Migration, database_path, open_database, transaction

OLD_MIGRATIONS = (*publisher.MIGRATIONS, Migration("edge_v1", _initial), Migration("edge_v2_lean", _lean_alert_path))


def old_watchlist_draft(fact: WatchlistMatched) -> AlertDraft:
    """What the previous WatchlistRule raised: the same alert, its trigger the fact's event id."""
    return AlertDraft(
        kind="watchlist_hit", severity=Severity.HIGH,
        title=f"check-in held at {fact.device}: the visitor matches watchlist entry {fact.entry}; "
              "see the reception console",
        dedupe_key=f"watchlist:{fact.visit_id}", trigger=fact.event_id, at=fact.occurred_at,
        fact_ids=(fact.event_id,), zone="reception", device=fact.source,
    )


def store_fact(db, fact: Event) -> None:
    db.execute("INSERT INTO facts (event_id, kind, source, occurred_at, payload) VALUES (?, ?, ?, ?, ?)",
               [fact.event_id, fact.kind, fact.source, fact.occurred_at.timestamp(),  # type: ignore[attr-defined]
                fact.model_dump_json()])


def watchlist_alerts(db) -> dict[str, dict]:
    rows = db.execute("SELECT dedupe_key, payload FROM alerts WHERE kind = 'watchlist_hit'").fetchall()
    return {key.removeprefix("watchlist:"): json.loads(payload) for key, payload in rows}


def test_upgraded_edge_neither_raises_decided_holds_again_nor_loses_open_ones(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", free_port(), None)
    path = database_path(tmp_path / "data", "edge")
    let_in, waiting = new_id(), new_id()

    old = open_database(path, OLD_MIGRATIONS)
    alerts = AlertStore(old, SITE, suppression_window_s=300, emit=lambda message, wire: None)
    with transaction(old):
        for visit in (let_in, waiting):
            fact = WatchlistMatched(site=SITE, source="kiosk/reception", visit_id=visit, entry="line 1")
            store_fact(old, fact)
            alerts.raise_alert(old_watchlist_draft(fact))
        # Before the upgrade nothing ended these alerts but a person: reception closed this one by hand.
        alerts.resolve(watchlist_alerts(old)[let_in]["alert_id"], "rita", "let in")
    messages_before = old.execute("SELECT max(seq) FROM alert_messages").fetchone()[0]
    old.conn.close()

    edge = EdgeService(load_settings(config))  # migrates, then replays the last day's facts into the rules
    assert edge.db.execute("SELECT count(*) FROM alerts").fetchone()[0] == 2, "a hold raised again"
    before = watchlist_alerts(edge.db)
    assert {visit: a["state"] for visit, a in before.items()} == {let_in: "resolved", waiting: "new"}
    assert edge.db.execute("SELECT type FROM alert_messages WHERE seq > ?", [messages_before]).fetchall() == []

    decided = WatchlistHoldDecided(site=SITE, source="kiosk/reception", visit_id=waiting, decision="refused",
                                   decided_by="rita")
    with transaction(edge.db):
        assert edge.process_fact(decided)
    after = watchlist_alerts(edge.db)
    assert after[waiting]["alert_id"] == before[waiting]["alert_id"]
    assert (after[waiting]["state"], after[waiting]["resolved_by"]) == ("resolved", "kiosk:rita")
    assert "refused" in after[waiting]["note"]
    assert after[let_in] == before[let_in]
    edge.db.conn.close()

    again = EdgeService(load_settings(config))  # the next start replays the decision too: nothing changes
    assert watchlist_alerts(again.db) == after
    again.db.conn.close()


def test_upgrade_gives_the_visit_key_to_the_open_alert_when_a_visit_had_two(tmp_path: Path) -> None:
    """The old key allowed a second alert for one visit (a second hold after the first was closed by hand)."""
    path = tmp_path / "edge.db"
    visit = new_id()
    old = open_database(path, OLD_MIGRATIONS)
    alerts = AlertStore(old, SITE, suppression_window_s=300, emit=lambda message, wire: None)
    with transaction(old):
        first = alerts.raise_alert(old_watchlist_draft(
            WatchlistMatched(site=SITE, source="kiosk/reception", visit_id=visit, entry="line 1")))
        assert first is not None
        alerts.resolve(first.alert_id, "rita", "let in")
        second = alerts.raise_alert(old_watchlist_draft(
            WatchlistMatched(site=SITE, source="kiosk/reception", visit_id=visit, entry="line 1")))
        assert second is not None and second.alert_id != first.alert_id
    old.conn.close()

    db = open_database(path, MIGRATIONS)
    assert db.execute("SELECT alert_id FROM alert_triggers WHERE trigger = ?",
                      [f"watchlist_hit:visit:{visit}"]).fetchall() == [(second.alert_id,)]
    upgraded = AlertStore(db, SITE, suppression_window_s=300, emit=lambda message, wire: None)
    with transaction(db):
        ended = upgraded.resolve_trigger("watchlist_hit", f"visit:{visit}", "kiosk:rita", "refused")
    assert ended is not None and ended.alert_id == second.alert_id
