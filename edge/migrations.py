"""The edge database's tables, as an ordered list of migrations."""

from __future__ import annotations

import sqlite_utils

from edge import publisher
from edge.store import Migration, run_script


def _initial(db: sqlite_utils.Database) -> None:
    run_script(
        db,
        """
        CREATE TABLE facts (
            event_id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            source TEXT NOT NULL,
            occurred_at REAL NOT NULL,
            received_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
            payload TEXT NOT NULL
        );
        CREATE INDEX facts_occurred ON facts (occurred_at);
        CREATE TABLE alerts (
            alert_id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            severity TEXT NOT NULL,
            state TEXT NOT NULL,
            dedupe_key TEXT NOT NULL,
            door TEXT,
            device TEXT,
            raised_at REAL NOT NULL,
            last_seen_at REAL NOT NULL,
            payload TEXT NOT NULL
        );
        CREATE INDEX alerts_dedupe ON alerts (dedupe_key, state);
        CREATE INDEX alerts_raised ON alerts (raised_at);
        CREATE TABLE alert_triggers (
            trigger TEXT PRIMARY KEY,
            alert_id TEXT NOT NULL REFERENCES alerts (alert_id)
        );
        CREATE TABLE alert_messages (
            seq INTEGER PRIMARY KEY,
            message_id TEXT NOT NULL UNIQUE,
            alert_id TEXT NOT NULL REFERENCES alerts (alert_id),
            type TEXT NOT NULL,
            created_at REAL NOT NULL,
            payload TEXT NOT NULL
        );
        CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY,
            message_id TEXT NOT NULL UNIQUE,
            severity_rank INTEGER NOT NULL,
            topic TEXT NOT NULL,
            payload BLOB NOT NULL
        );
        CREATE INDEX outbox_eviction ON outbox (severity_rank, seq);
        """
    )


def _lean_alert_path(db: sqlite_utils.Database) -> None:
    """Each alert message is stored once, in alert_messages: the outbox and the local feed point at it.

    The outbox keeps only what eviction needs (sequence number and severity) and the local alert topics
    are fed from alert_messages behind a cursor, instead of a copy per message in publish_queue; the
    alerts' dedupe index went unread (repeats fold through an in-memory index) and cost an update per write.
    """
    run_script(
        db,
        """
        CREATE TABLE outbox_lean (
            seq INTEGER PRIMARY KEY,
            severity_rank INTEGER NOT NULL
        );
        INSERT INTO outbox_lean (seq, severity_rank) SELECT seq, severity_rank FROM outbox;
        DROP TABLE outbox;
        ALTER TABLE outbox_lean RENAME TO outbox;
        CREATE INDEX outbox_eviction ON outbox (severity_rank, seq);
        CREATE TABLE alert_feed (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            acked_seq INTEGER NOT NULL
        );
        INSERT INTO alert_feed (id, acked_seq) SELECT 1, coalesce(max(seq), 0) FROM alert_messages;
        DROP INDEX alerts_dedupe;
        """
    )


def _watchlist_triggers_by_visit(db: sqlite_utils.Database) -> None:
    """watchlist_hit alerts are found by their visit: `watchlist_hit:visit:<visit id>`, where they were found by the
    event id of the fact that raised them.

    Without this the start-up replay would not recognise the alerts raised before the upgrade and would raise the
    hold again (for visitors reception already let in or turned away), and a decision made after the upgrade would
    not find the alert it ends. The visit is in every such alert's dedupe key (`watchlist:<visit id>`). Should one
    visit have had more than one alert, the trigger goes to its open one, else to its newest.
    """
    db.execute(
        "INSERT OR IGNORE INTO alert_triggers (trigger, alert_id) "
        "SELECT 'watchlist_hit:visit:' || substr(dedupe_key, length('watchlist:') + 1), alert_id FROM alerts "
        "WHERE kind = 'watchlist_hit' AND substr(dedupe_key, 1, length('watchlist:')) = 'watchlist:' "
        "ORDER BY state = 'resolved', raised_at DESC"
    )


MIGRATIONS = (*publisher.MIGRATIONS, Migration("edge_v1", _initial), Migration("edge_v2_lean", _lean_alert_path),
              Migration("edge_v3_watchlist_by_visit", _watchlist_triggers_by_visit))
