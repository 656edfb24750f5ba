"""The console's database: every alert message once, and each alert's latest state."""

from __future__ import annotations

import sqlite_utils

from edge.alerts import Alert, AlertMessage
from edge.store import Migration, run_script


def _initial(db: sqlite_utils.Database) -> None:
    run_script(
        db,
        """
        CREATE TABLE alert_messages (
            message_id TEXT PRIMARY KEY,
            site TEXT NOT NULL,
            seq INTEGER NOT NULL,
            alert_id TEXT NOT NULL,
            type TEXT NOT NULL,
            received_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
            payload TEXT NOT NULL
        );
        CREATE INDEX alert_messages_site_seq ON alert_messages (site, seq);
        CREATE TABLE alerts (
            alert_id TEXT PRIMARY KEY,
            site TEXT NOT NULL,
            kind TEXT NOT NULL,
            severity TEXT NOT NULL,
            state TEXT NOT NULL,
            last_seq INTEGER NOT NULL,
            raised_at REAL NOT NULL,
            payload TEXT NOT NULL
        );
        CREATE INDEX alerts_site_raised ON alerts (site, raised_at);
        """,
    )


def _quarantine(db: sqlite_utils.Database) -> None:
    run_script(
        db,
        """
        CREATE TABLE rejected_messages (
            message_id TEXT PRIMARY KEY,
            site TEXT NOT NULL,
            topic TEXT NOT NULL,
            reason TEXT NOT NULL,
            received_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
            payload BLOB NOT NULL
        );
        """,
    )


MIGRATIONS = (Migration("console_v1", _initial), Migration("console_v2_rejected", _quarantine))


def store_rejected(db: sqlite_utils.Database, message_id: str, site: str, topic: str, reason: str,
                   payload: bytes) -> None:
    """Keep a message this console cannot read (e.g. from a newer edge) for a person to look at."""
    db.execute(
        "INSERT OR IGNORE INTO rejected_messages (message_id, site, topic, reason, payload) VALUES (?, ?, ?, ?, ?)",
        [message_id, site, topic, reason, payload],
    )


def store_message(db: sqlite_utils.Database, message: AlertMessage) -> bool:
    """Store one message (inside the caller's transaction); False if it was stored before."""
    alert = message.alert
    payload = message.model_dump_json()
    inserted = db.execute(
        "INSERT OR IGNORE INTO alert_messages (message_id, site, seq, alert_id, type, payload) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [message.message_id, alert.site, message.seq, alert.alert_id, message.type, payload],
    ).rowcount
    if not inserted:
        return False
    # Messages can arrive out of order after a resend: the highest sequence number is the alert's state.
    # The alert's JSON is cut out of the message's by sqlite rather than serialized a second time.
    db.execute(
        "INSERT INTO alerts (alert_id, site, kind, severity, state, last_seq, raised_at, payload) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, json_extract(?, '$.alert')) ON CONFLICT(alert_id) DO UPDATE SET "
        "state = excluded.state, last_seq = excluded.last_seq, payload = excluded.payload "
        "WHERE excluded.last_seq > alerts.last_seq",
        [alert.alert_id, alert.site, alert.kind, alert.severity.value, alert.state.value, message.seq,
         alert.raised_at.timestamp(), payload],
    )
    return True


def list_alerts(db: sqlite_utils.Database, site: str | None = None, limit: int = 50) -> list[Alert]:
    """Newest first, optionally for one site."""
    where, args = ("WHERE site = ?", [site]) if site else ("", [])
    rows = db.execute(f"SELECT payload FROM alerts {where} ORDER BY raised_at DESC LIMIT ?",
                      [*args, limit]).fetchall()
    return [Alert.model_validate_json(r[0]) for r in rows]
