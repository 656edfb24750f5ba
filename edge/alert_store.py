"""The edge's alert store: raising, folding repeats, acknowledging and resolving, each change a message."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import sqlite_utils

from edge.alerts import MAX_FACT_IDS, Alert, AlertMessage, AlertState
from edge.events import utcnow
from edge.ids import new_id
from edge.rules.base import AlertDraft

logger = logging.getLogger(__name__)

LOG_WINDOW_S = 10.0
LOG_ALERTS_PER_WINDOW = 50


class AlertNotFound(LookupError):
    """No alert matches the id given."""


class AlertAmbiguous(LookupError):
    """More than one alert matches the id fragment given."""


class AlertStore:
    """Alerts in sqlite. Every change emits an AlertMessage through `emit`, inside the same transaction.

    Raising is idempotent per trigger (a rule's key for what caused it): replaying facts after a crash
    never raises an alert twice. A repeat with the same dedupe key, while the alert is unresolved and its
    last occurrence is inside the suppression window, folds into it instead of raising a new one.
    """

    def __init__(self, db: sqlite_utils.Database, site: str, suppression_window_s: float,
                 emit: Callable[[AlertMessage, bytes], None]) -> None:
        self.db = db
        self.site = site
        self.suppression = timedelta(seconds=suppression_window_s)
        self.emit = emit
        self.raised_total = 0
        self.folded_total = 0
        self._log_window_start = 0.0
        self._log_count = 0
        self._log_suppressed = 0
        # Log lines about changes, said once their transaction committed: a rolled-back one did not happen.
        self._unlogged: list[tuple[str, tuple[object, ...]]] = []
        self._next_seq = 1
        # Unresolved alerts that a repeat could still fold into, by dedupe key: the database holds the same,
        # this saves a query and a parse per raise. Entries older than the window are dropped as met.
        self._foldable: dict[str, Alert] = {}
        self.reload()

    def reload(self) -> None:
        """Read what memory mirrors (next sequence number, foldable alerts) from the database again: at start,
        and after a rolled-back transaction left memory ahead of the database."""
        db = self.db
        self._unlogged.clear()
        self._next_seq = int(db.execute("SELECT coalesce(max(seq), 0) FROM alert_messages").fetchone()[0]) + 1
        self._foldable = {}
        since = (utcnow() - self.suppression).timestamp()
        for (payload,) in db.execute("SELECT payload FROM alerts WHERE state != 'resolved' AND last_seen_at >= ? "
                                     "ORDER BY raised_at", [since]):
            try:
                alert = Alert.model_validate_json(payload)
            except ValueError as err:
                logger.warning("skipping a stored alert this version cannot read: %s", str(err).splitlines()[0])
                continue
            self._foldable[alert.dedupe_key] = alert

    def raise_alert(self, draft: AlertDraft) -> Alert | None:
        """Raise or fold; None when this trigger was handled before."""
        trigger = f"{draft.kind}:{draft.trigger}"
        if self.db.execute("SELECT 1 FROM alert_triggers WHERE trigger = ?", [trigger]).fetchone():
            return None
        now = utcnow()
        current = self._foldable.get(draft.dedupe_key)
        if current is not None and current.last_seen_at < draft.at - self.suppression:
            del self._foldable[draft.dedupe_key]
            current = None
        if current is not None:
            fact_ids = (current.fact_ids + tuple(f for f in draft.fact_ids if f not in current.fact_ids))
            alert = current.model_copy(update={
                "count": current.count + 1,
                "fact_ids": fact_ids[:MAX_FACT_IDS],
                "last_seen_at": max(current.last_seen_at, draft.at),
            })
            self._save(alert, "update")
            self.folded_total += 1
        else:
            alert = Alert(
                alert_id=new_id(), site=self.site, kind=draft.kind, severity=draft.severity, title=draft.title,
                door=draft.door, zone=draft.zone, device=draft.device, fact_ids=draft.fact_ids[:MAX_FACT_IDS],
                evidence=draft.evidence, dedupe_key=draft.dedupe_key, raised_at=now, last_seen_at=draft.at,
            )
            self._save(alert, "new")
            self.raised_total += 1
            self._log_new(alert)
        self.db.execute("INSERT INTO alert_triggers (trigger, alert_id) VALUES (?, ?)", [trigger, alert.alert_id])
        return alert

    def log_committed(self) -> None:
        """Log the changes of the transaction that just committed (call after the commit)."""
        for message, args in self._unlogged:
            logger.info(message, *args)
        self._unlogged.clear()

    def roll_log_window(self) -> None:
        """Close the log window when it is over, summing up the alerts it did not log one by one."""
        now = time.monotonic()
        if now - self._log_window_start < LOG_WINDOW_S:
            return
        if self._log_suppressed:
            logger.warning("%d more alerts in the last %.0f s were not logged one by one (see `sitewarden "
                           "alerts list`)", self._log_suppressed, now - self._log_window_start)
        self._log_window_start, self._log_count, self._log_suppressed = now, 0, 0

    def _log_new(self, alert: Alert) -> None:
        """One line per new alert, but a flood is summed up instead of drowning the log."""
        self.roll_log_window()
        self._log_count += 1
        if self._log_count <= LOG_ALERTS_PER_WINDOW:
            self._unlogged.append(("alert %s %s %s: %s",
                                   (alert.alert_id, alert.severity.value, alert.kind, alert.title)))
        else:
            self._log_suppressed += 1

    def resolve_trigger(self, kind: str, trigger: str, by: str, note: str) -> Alert | None:
        """Resolve the alert a trigger raised, if it is still open."""
        row = self.db.execute("SELECT alert_id FROM alert_triggers WHERE trigger = ?",
                              [f"{kind}:{trigger}"]).fetchone()
        if row is None:
            return None
        alert = self.get(row[0])
        if alert.state == AlertState.RESOLVED:
            return None
        return self._transition(alert, AlertState.RESOLVED, by, note)

    def acknowledge(self, ident: str, by: str, note: str | None = None) -> tuple[Alert, bool]:
        """A person has seen it and is on it. Returns the alert and whether this changed it."""
        alert = self.find(ident)
        if alert.state != AlertState.NEW:
            return alert, False
        return self._transition(alert, AlertState.ACKNOWLEDGED, by, note), True

    def resolve(self, ident: str, by: str, note: str | None = None) -> tuple[Alert, bool]:
        """A person closes it. Returns the alert and whether this changed it."""
        alert = self.find(ident)
        if alert.state == AlertState.RESOLVED:
            return alert, False
        return self._transition(alert, AlertState.RESOLVED, by, note), True

    def _transition(self, alert: Alert, state: AlertState, by: str, note: str | None) -> Alert:
        now = utcnow()
        update: dict[str, object] = {"state": state, "note": note if note is not None else alert.note}
        if state == AlertState.ACKNOWLEDGED:
            update |= {"acknowledged_by": by, "acknowledged_at": now}
        else:
            update |= {"resolved_by": by, "resolved_at": now}
        changed = alert.model_copy(update=update)
        self._save(changed, "end" if state == AlertState.RESOLVED else "update")
        self._unlogged.append(("alert %s %s by %s", (alert.alert_id, state.value, by)))
        return changed

    def get(self, alert_id: str) -> Alert:
        """One alert by its full id."""
        row = self.db.execute("SELECT payload FROM alerts WHERE alert_id = ?", [alert_id]).fetchone()
        if row is None:
            raise AlertNotFound(f"no alert {alert_id}")
        return Alert.model_validate_json(row[0])

    def find(self, ident: str) -> Alert:
        """An alert by full id or by a fragment of at least 6 characters that matches only one."""
        ident = ident.strip().lower()
        row = self.db.execute("SELECT payload FROM alerts WHERE alert_id = ?", [ident]).fetchone()
        if row is not None:
            return Alert.model_validate_json(row[0])
        if len(ident) < 6:
            raise AlertNotFound(f"no alert {ident!r} (give the full id or at least 6 characters of it)")
        rows = self.db.execute("SELECT payload FROM alerts WHERE instr(alert_id, ?) > 0 LIMIT 2", [ident]).fetchall()
        if not rows:
            raise AlertNotFound(f"no alert matches {ident!r}")
        if len(rows) > 1:
            raise AlertAmbiguous(f"more than one alert matches {ident!r}; give more of the id")
        return Alert.model_validate_json(rows[0][0])

    def list(self, state: AlertState | None = None, limit: int = 50) -> list[Alert]:
        """Newest first."""
        where, args = ("WHERE state = ?", [state.value]) if state else ("", [])
        rows = self.db.execute(f"SELECT payload FROM alerts {where} ORDER BY raised_at DESC LIMIT ?",
                               [*args, limit]).fetchall()
        return [Alert.model_validate_json(r[0]) for r in rows]

    def _save(self, alert: Alert, kind: str) -> None:
        held = self._foldable.get(alert.dedupe_key)
        same_or_newer = held is None or held.alert_id == alert.alert_id or alert.raised_at > held.raised_at
        if alert.state != AlertState.RESOLVED:
            if same_or_newer:  # acknowledging an older alert must not hide the newer one repeats fold into
                self._foldable[alert.dedupe_key] = alert
        elif held is not None and held.alert_id == alert.alert_id:
            del self._foldable[alert.dedupe_key]
        payload = alert.model_dump_json()
        self.db.execute(
            "INSERT INTO alerts (alert_id, kind, severity, state, dedupe_key, door, device, raised_at, "
            "last_seen_at, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(alert_id) DO UPDATE SET "
            "state = excluded.state, last_seen_at = excluded.last_seen_at, payload = excluded.payload",
            [alert.alert_id, alert.kind, alert.severity.value, alert.state.value, alert.dedupe_key, alert.door,
             alert.device, alert.raised_at.timestamp(), alert.last_seen_at.timestamp(), payload],
        )
        message = AlertMessage(seq=self._next_seq, type=kind, alert=alert)  # type: ignore[arg-type]
        self._next_seq += 1
        wire = message.model_dump_json()
        self.db.execute(
            "INSERT INTO alert_messages (seq, message_id, alert_id, type, created_at, payload) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [message.seq, message.message_id, alert.alert_id, kind, datetime.now().timestamp(), wire],
        )
        self.emit(message, wire.encode())
