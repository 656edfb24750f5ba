"""The kiosk's tables in its service database (the same file its fact outbox lives in)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import sqlite_utils

from edge.store import Migration, run_script

# Encrypted columns of `visits`: sealed with the row id and column name as associated data.
SEALED_VISIT_COLUMNS = ("name", "company", "email", "phone", "purpose", "signature", "photo")


def _v1(db: sqlite_utils.Database) -> None:
    sealed = ",\n".join(f"    {c}_enc BLOB" for c in SEALED_VISIT_COLUMNS)
    run_script(db, f"""
CREATE TABLE visits (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN
        ('expected', 'in_progress', 'held', 'on_site', 'checked_out', 'cancelled', 'refused', 'abandoned')),
    host_id TEXT NOT NULL,
    lang TEXT NOT NULL DEFAULT 'nl',
    pre_registered INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    expected_start TEXT,
    expected_end TEXT,
    checked_in_at TEXT,
    checked_out_at TEXT,
    checked_out_by TEXT,
    badge_code TEXT,
    invite_code TEXT UNIQUE,
    flow_hash TEXT UNIQUE,
    flow_expires_at TEXT,
    rules_version TEXT,
    rules_signed_at TEXT,
    person_index TEXT,
    name_index TEXT,
    watch_entry TEXT,
    overstay_reported_at TEXT,
    anonymized_at TEXT,
{sealed}
);
CREATE INDEX visits_state ON visits (state, expected_start);
CREATE INDEX visits_checked_in ON visits (checked_in_at);
CREATE INDEX visits_person ON visits (person_index, rules_signed_at);
CREATE INDEX visits_name ON visits (name_index);
CREATE UNIQUE INDEX visits_badge_active ON visits (badge_code) WHERE state = 'on_site';
CREATE TABLE staff_users (
    username TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('reception', 'facilities', 'admin')),
    password_hash TEXT NOT NULL,
    totp_enc BLOB NOT NULL,
    last_totp_step INTEGER NOT NULL DEFAULT 0,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE TABLE staff_sessions (
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES staff_users(username) ON DELETE CASCADE,
    stage TEXT NOT NULL CHECK (stage IN ('password', 'full')),
    csrf TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE TABLE api_tokens (
    token_hash TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    last_used_at TEXT
);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    visit_id TEXT,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE TABLE notices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    visit_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try_at TEXT NOT NULL,
    sent_at TEXT,
    last_error TEXT
);
CREATE INDEX notices_due ON notices (sent_at, next_try_at);
CREATE TABLE kiosk_jobs (
    name TEXT PRIMARY KEY,
    last_run_for TEXT NOT NULL
);
""")


def _v2(db: sqlite_utils.Database) -> None:
    """Scoped API tokens, the addresses each staff account signed in from, password resets.

    Tokens made before scopes get the narrowest sane one, `preregister`: they may still create visits, and no
    longer list, read or cancel any (`sitewarden kiosk api-token scope NAME --scope ...` gives more back).
    """
    run_script(db, """
ALTER TABLE api_tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT 'preregister';
ALTER TABLE staff_users ADD COLUMN must_change_password INTEGER NOT NULL DEFAULT 0;
CREATE TABLE staff_addresses (
    username TEXT NOT NULL REFERENCES staff_users(username) ON DELETE CASCADE,
    address TEXT NOT NULL,
    last_login_at TEXT NOT NULL,
    PRIMARY KEY (username, address)
);
""")


MIGRATIONS = (Migration("kiosk_v1", _v1), Migration("kiosk_v2", _v2))


def iso(moment: datetime) -> str:
    """UTC timestamp text that sorts in time order."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse_iso(text: str | None) -> datetime | None:
    """The reverse of `iso`."""
    return None if text is None else datetime.fromisoformat(text)


def record_audit(db: sqlite_utils.Database, at: datetime, actor: str, action: str, visit_id: str | None = None,
                 detail: str = "") -> None:
    """One audit entry (inside the caller's transaction). `detail` never holds personal data."""
    db.execute("INSERT INTO audit (at, actor, action, visit_id, detail) VALUES (?, ?, ?, ?, ?)",
               [iso(at), actor, action, visit_id, detail])


def token_hash(token: str) -> str:
    """What is stored of a secret token (flow, session, API): its SHA-256, never the token."""
    return hashlib.sha256(token.encode()).hexdigest()
