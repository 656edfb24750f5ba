"""The reception desk: visits from check-in to check-out, with the facts they produce.

Every change to a visit and the facts it causes commit in one transaction on the kiosk's database
(`FactProducer.atomic`), so a visitor checked in while the broker is down is announced once it is back.
Personal data is sealed per field (`crypto.FieldCipher`); the audit log never holds any.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from edge.config import Settings
from edge.events import (
    Event,
    VisitorArrived,
    VisitorCheckedOut,
    VisitorOverstayed,
    WatchlistHoldDecided,
    WatchlistMatched,
    utcnow,
)
from edge.ids import new_id
from kiosk.crypto import FieldCipher
from kiosk.forms import VisitorDetails
from kiosk.store import SEALED_VISIT_COLUMNS, iso, parse_iso, record_audit, token_hash
from kiosk.text import BADGE_CODE_LEN, INVITE_CODE_LEN, clean_code, new_code, normalize_name
from kiosk.watchlist import Watchlist

logger = logging.getLogger(__name__)

SERVICE_NAME = "kiosk"
FLOW_MINUTES = 30  # a check-in left half-way is dropped after this; the badge page stays as long after
ACTIVE_STATES = ("on_site", "held")
# What a visit is opened from: never the photo or signature blobs themselves (up to a megabyte each).
VISIT_COLUMNS = ("id, state, host_id, lang, pre_registered, expected_start, expected_end, checked_in_at, "
                 "checked_out_at, checked_out_by, badge_code, invite_code, rules_version, rules_signed_at, "
                 "watch_entry, anonymized_at, name_enc, company_enc, email_enc, phone_enc, purpose_enc, "
                 "photo_enc IS NOT NULL AS has_photo")
OPENED_CACHE = 4096  # visits whose personal fields stay decrypted in memory (the console shows the same ones)


@dataclass(frozen=True)
class Visit:
    """One visit, opened for display."""

    id: str
    state: str
    host_id: str
    lang: str
    pre_registered: bool
    name: str
    company: str
    email: str | None
    phone: str | None
    purpose: str
    expected_start: datetime | None
    expected_end: datetime | None
    checked_in_at: datetime | None
    checked_out_at: datetime | None
    checked_out_by: str | None
    badge_code: str | None
    invite_code: str | None
    rules_version: str | None
    rules_signed_at: datetime | None
    watch_entry: str | None
    has_photo: bool
    anonymized: bool

    @property
    def overdue(self) -> bool:
        """Still on site past the expected end."""
        return self.state == "on_site" and self.expected_end is not None and self.expected_end < utcnow()


@dataclass(frozen=True)
class Started:
    """What became of a check-in's first step."""

    outcome: Literal["flow", "held"]
    visit_id: str
    flow_token: str | None = None


class Storage(Protocol):
    """Where the desk keeps visits: the kiosk's database, its lock, and transactions that may carry facts.

    `edge.producer.FactProducer` in the service; `kiosk.service.OfflineStorage` in admin commands.
    """

    db: Any
    lock: Any

    def atomic(self) -> Any:
        """A transaction whose appended facts are published after commit."""


class VisitNotFound(LookupError):
    """No visit fits (wrong code, expired flow, wrong state)."""


class Desk:
    """Visits, their state changes and the facts and audit entries those cause."""

    def __init__(self, settings: Settings, producer: Storage, cipher: FieldCipher,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.kiosk = settings.kiosk
        self.site = settings.site.id
        self.tz = ZoneInfo(settings.site.timezone)
        self.producer = producer
        self.db = producer.db
        self.cipher = cipher
        self.clock = clock
        self.watchlist = Watchlist(self.kiosk.watchlist_file)
        self.source = f"{SERVICE_NAME}/{self.kiosk.device_id}"
        self._opened: OrderedDict[tuple[Any, ...], tuple[str | None, ...]] = OrderedDict()
        self._opened_lock = threading.Lock()
        self._listings: dict[tuple[str, tuple[Any, ...]], tuple[tuple[int, int], list[Visit]]] = {}

    # -- plumbing --------------------------------------------------------------------------------------------
    @contextmanager
    def _atomic(self) -> Iterator[list[Event]]:
        with self.producer.atomic() as facts:
            yield facts

    def _rows(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        with self.producer.lock:
            cur = self.db.execute(sql, params)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def _listing(self, sql: str, params: tuple[Any, ...] = ()) -> list[Visit]:
        """The visits of a console list, opened; kept until the database changes.

        The console asks for the same lists on every reload. `PRAGMA data_version` moves when another
        connection commits (an admin command, a second process) and `total_changes` when this one writes.
        """
        with self.producer.lock:
            version = (self.db.execute("PRAGMA data_version").fetchone()[0], self.db.conn.total_changes)
            kept = self._listings.get((sql, params))
            if kept is not None and kept[0] == version:
                return list(kept[1])
            visits = [self._open(r) for r in self._rows(sql, params)]
            if len(self._listings) > 16:  # a new day's expected_today is a new key
                self._listings.clear()
            self._listings[(sql, params)] = (version, visits)
            return list(visits)

    def _audit(self, actor: str, action: str, visit_id: str | None = None, detail: str = "") -> None:
        record_audit(self.db, self.clock(), actor, action, visit_id, detail)

    def _seal_details(self, visit_id: str, details: VisitorDetails) -> dict[str, Any]:
        seal = self.cipher.seal
        return {
            "name_enc": seal("visits", "name", visit_id, details.name),
            "company_enc": seal("visits", "company", visit_id, details.company),
            "email_enc": seal("visits", "email", visit_id, details.email),
            "phone_enc": seal("visits", "phone", visit_id, details.phone),
            "purpose_enc": seal("visits", "purpose", visit_id, details.purpose),
            "person_index": self.person_index(details.name, details.email, details.company),
            "name_index": self.cipher.index(normalize_name(details.name)),
        }

    def person_index(self, name: str, email: str | None, company: str) -> str:
        """Who a returning visitor is, as a keyed hash: their name plus e-mail (or company when no e-mail)."""
        second = (email or "").strip().casefold() or normalize_name(company)
        return self.cipher.index(f"{normalize_name(name)}|{second}")

    def _personal(self, row: dict[str, Any]) -> tuple[str | None, ...]:
        """The five text fields, decrypted once per sealed value (the cache key holds the ciphertext)."""
        vid = row["id"]
        key = (vid, row["name_enc"], row["company_enc"], row["email_enc"], row["phone_enc"], row["purpose_enc"])
        with self._opened_lock:
            found = self._opened.get(key)
            if found is not None:
                self._opened.move_to_end(key)
                return found
        plain = tuple(self.cipher.open("visits", col, vid, row[f"{col}_enc"])
                      for col in ("name", "company", "email", "phone", "purpose"))
        with self._opened_lock:
            self._opened[key] = plain
            while len(self._opened) > OPENED_CACHE:
                self._opened.popitem(last=False)
        return plain

    def _open(self, row: dict[str, Any]) -> Visit:
        vid = row["id"]
        name, company, email, phone, purpose = self._personal(row)
        return Visit(
            id=vid, state=row["state"], host_id=row["host_id"], lang=row["lang"],
            pre_registered=bool(row["pre_registered"]),
            name=name or "", company=company or "", email=email, phone=phone, purpose=purpose or "",
            expected_start=parse_iso(row["expected_start"]), expected_end=parse_iso(row["expected_end"]),
            checked_in_at=parse_iso(row["checked_in_at"]), checked_out_at=parse_iso(row["checked_out_at"]),
            checked_out_by=row["checked_out_by"], badge_code=row["badge_code"], invite_code=row["invite_code"],
            rules_version=row["rules_version"], rules_signed_at=parse_iso(row["rules_signed_at"]),
            watch_entry=row["watch_entry"], has_photo=bool(row["has_photo"]),
            anonymized=row["anonymized_at"] is not None,
        )

    def get(self, visit_id: str) -> Visit:
        """One visit by id."""
        rows = self._rows(f"SELECT {VISIT_COLUMNS} FROM visits WHERE id = ?", [visit_id])
        if not rows:
            raise VisitNotFound(visit_id)
        return self._open(rows[0])

    def photo(self, visit_id: str) -> bytes | None:
        """The visit's photo (JPEG), if one was taken."""
        rows = self._rows("SELECT photo_enc FROM visits WHERE id = ?", [visit_id])
        if not rows:
            raise VisitNotFound(visit_id)
        return self.cipher.open_bytes("visits", "photo", visit_id, rows[0]["photo_enc"])

    def signature(self, visit_id: str) -> bytes | None:
        """The visit's drawn signature (PNG), if signed."""
        rows = self._rows("SELECT signature_enc FROM visits WHERE id = ?", [visit_id])
        if not rows:
            raise VisitNotFound(visit_id)
        return self.cipher.open_bytes("visits", "signature", visit_id, rows[0]["signature_enc"])

    def _unique_code(self, column: str, length: int) -> str:
        where = "state = 'on_site'" if column == "badge_code" else "1"
        while True:
            code = new_code(length)
            if not self.db.execute(f"SELECT 1 FROM visits WHERE {column} = ? AND {where}", [code]).fetchone():
                return code

    def _flow(self, visit_id: str) -> str:
        token = secrets.token_urlsafe(24)
        self.db.execute("UPDATE visits SET flow_hash = ?, flow_expires_at = ? WHERE id = ?",
                        [token_hash(token), iso(self.clock() + timedelta(minutes=FLOW_MINUTES)), visit_id])
        return token

    # -- check-in ----------------------------------------------------------------------------------------------
    def start_walk_in(self, details: VisitorDetails, lang: str) -> Started:
        """First step of a walk-in: held when the name is on the watchlist, else a check-in flow."""
        now = self.clock()
        vid = new_id()
        entry = self.watchlist.match(details.name)
        with self._atomic() as facts:
            row = {
                "id": vid, "state": "held" if entry else "in_progress", "host_id": details.host_id, "lang": lang,
                "pre_registered": 0, "created_at": iso(now), "created_by": "kiosk", "expected_start": iso(now),
                "expected_end": iso(now + timedelta(hours=self.kiosk.visit_hours)), "watch_entry": entry,
                **self._seal_details(vid, details),
            }
            cols = ", ".join(row)
            self.db.execute(f"INSERT INTO visits ({cols}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
            if entry:
                self._audit("kiosk", "watchlist_hold", vid, entry)
                facts.append(WatchlistMatched(site=self.site, source=self.source, visit_id=vid, entry=entry))
                return Started("held", vid)
            token = self._flow(vid)
        return Started("flow", vid, token)

    def find_invite(self, code: str) -> Visit:
        """An expected visit by invite code, for today (site time)."""
        code = clean_code(code)
        if len(code) != INVITE_CODE_LEN:
            raise VisitNotFound("bad invite code")
        rows = self._rows(f"SELECT {VISIT_COLUMNS} FROM visits WHERE invite_code = ? AND state = 'expected'", [code])
        if not rows:
            raise VisitNotFound("invite")
        visit = self._open(rows[0])
        today = self.clock().astimezone(self.tz).date()
        start = visit.expected_start.astimezone(self.tz).date() if visit.expected_start else today
        end = visit.expected_end.astimezone(self.tz).date() if visit.expected_end else start
        if not (start <= today <= end):
            raise VisitNotFound("invite not for today")
        return visit

    def start_invited(self, code: str, lang: str) -> Started:
        """First step for an invited visitor: one confirming tap, then the same flow (watchlist checked too)."""
        visit = self.find_invite(code)
        entry = self.watchlist.match(visit.name)
        with self._atomic() as facts:
            cur = self.db.execute("UPDATE visits SET state = ?, lang = ?, watch_entry = ? WHERE id = ? AND "
                                  "state = 'expected'", ["held" if entry else "in_progress", lang, entry, visit.id])
            if cur.rowcount != 1:
                raise VisitNotFound("invite already used")
            if entry:
                self._audit("kiosk", "watchlist_hold", visit.id, entry)
                facts.append(WatchlistMatched(site=self.site, source=self.source, visit_id=visit.id, entry=entry))
                return Started("held", visit.id)
            token = self._flow(visit.id)
        return Started("flow", visit.id, token)

    def flow_visit(self, token: str, states: tuple[str, ...] = ("in_progress",)) -> Visit:
        """The visit a check-in flow token belongs to, while the token is valid."""
        rows = self._rows(f"SELECT {VISIT_COLUMNS} FROM visits WHERE flow_hash = ? AND flow_expires_at > ?",
                          [token_hash(token), iso(self.clock())])
        if not rows or rows[0]["state"] not in states:
            raise VisitNotFound("flow")
        return self._open(rows[0])

    def needs_rules(self, visit: Visit) -> bool:
        """Whether this visitor must sign the house rules: not signed this version within `valid_days`."""
        rules = self.kiosk.house_rules
        if visit.rules_version == rules.version:
            return False
        index = self.person_index(visit.name, visit.email, visit.company)
        since = iso(self.clock() - timedelta(days=rules.valid_days))
        row = self._rows("SELECT 1 FROM visits WHERE person_index = ? AND rules_version = ? AND rules_signed_at >= ? "
                         "AND id != ? LIMIT 1", [index, rules.version, since, visit.id])
        return not row

    def sign_rules(self, token: str, signature_png: bytes) -> Visit:
        """Record the house-rules version, the time and the drawn signature."""
        visit = self.flow_visit(token)
        with self._atomic():
            self.db.execute("UPDATE visits SET rules_version = ?, rules_signed_at = ?, signature_enc = ? WHERE id = ?",
                            [self.kiosk.house_rules.version, iso(self.clock()),
                             self.cipher.seal("visits", "signature", visit.id, signature_png), visit.id])
        return self.get(visit.id)

    def complete(self, token: str, photo_jpeg: bytes | None) -> Visit:
        """Last step: the visitor is on site, gets a badge code, and the host is told."""
        visit = self.flow_visit(token)
        if self.needs_rules(visit):
            raise VisitNotFound("house rules not signed")
        return self._check_in(visit, photo_jpeg, by="kiosk", flow_hash=token_hash(token))

    def _check_in(self, visit: Visit, photo_jpeg: bytes | None, by: Literal["kiosk", "reception"],
                  flow_hash: str | None = None) -> Visit:
        now = self.clock()
        planned = visit.expected_end if visit.pre_registered and visit.expected_end else \
            now + timedelta(hours=self.kiosk.visit_hours)
        end = self.visit_end(now, planned)
        with self._atomic() as facts:
            code = self._unique_code("badge_code", BADGE_CODE_LEN)
            photo = self.cipher.seal("visits", "photo", visit.id, photo_jpeg) if photo_jpeg else None
            cur = self.db.execute(
                "UPDATE visits SET state = 'on_site', checked_in_at = ?, badge_code = ?, expected_end = ?, "
                "photo_enc = COALESCE(?, photo_enc), flow_expires_at = ? WHERE id = ? AND state IN ('in_progress', "
                "'held')", [iso(now), code, iso(end), photo, iso(now + timedelta(minutes=FLOW_MINUTES)), visit.id])
            if cur.rowcount != 1:
                raise VisitNotFound("not checking in")
            if self.kiosk.smtp is not None and self.kiosk.hosts.get(visit.host_id) and \
                    self.kiosk.hosts[visit.host_id].email:
                self.db.execute("INSERT INTO notices (visit_id, kind, next_try_at) VALUES (?, 'arrived', ?)",
                                [visit.id, iso(now)])
            self._audit(by, "check_in", visit.id, by)  # the visit id only: who it was stays sealed in the row
            facts.append(VisitorArrived(site=self.site, source=self.source, visit_id=visit.id,
                                        host_id=visit.host_id, pre_registered=visit.pre_registered,
                                        checked_in_by=by))
        return self.get(visit.id)

    def end_flow(self, token: str) -> None:
        """The visitor left the badge page: its token no longer opens the badge (nor its photo)."""
        with self._atomic():
            self.db.execute("UPDATE visits SET flow_hash = NULL, flow_expires_at = NULL WHERE flow_hash = ? AND "
                            "state = 'on_site'", [token_hash(token)])

    def badge_visit(self, token: str) -> Visit:
        """The checked-in visit behind a flow token, for printing its badge shortly after check-in."""
        return self.flow_visit(token, states=("on_site",))

    def visit_end(self, start: datetime, planned: datetime) -> datetime:
        """When a visit checked in at `start` ends: as planned, but within `badge_valid_hours` and before the
        site's end of day (local time), when everyone still on site is checked out."""
        local = start.astimezone(self.tz)
        hours, minutes = (int(p) for p in self.kiosk.end_of_day.split(":"))
        eod = datetime.combine(local.date(), time(hours, minutes), self.tz)
        until = min(planned, start + timedelta(hours=self.kiosk.badge_valid_hours))
        return min(until, eod) if eod > start else until

    def badge_valid_until(self, visit: Visit) -> datetime:
        """The end of the badge's validity: the visit's end, as the console shows it."""
        if visit.expected_end is not None:
            return visit.expected_end
        start = visit.checked_in_at or self.clock()
        return self.visit_end(start, start + timedelta(hours=self.kiosk.visit_hours))

    # -- check-out ---------------------------------------------------------------------------------------------
    def check_out_code(self, typed: str) -> Visit:
        """Check out by the badge's short code (typed, or scanned from its QR code)."""
        code = clean_code(typed)
        if len(code) != BADGE_CODE_LEN:
            raise VisitNotFound("bad code")
        rows = self._rows("SELECT id FROM visits WHERE badge_code = ? AND state = 'on_site'", [code])
        if not rows:
            raise VisitNotFound("code")
        return self.check_out(rows[0]["id"], by="kiosk", actor="kiosk")

    def check_out(self, visit_id: str, by: Literal["kiosk", "reception", "end_of_day"], actor: str) -> Visit:
        """End a visit on site."""
        with self._atomic() as facts:
            row = self.db.execute("SELECT host_id FROM visits WHERE id = ? AND state = 'on_site'",
                                  [visit_id]).fetchone()
            if row is None:
                raise VisitNotFound("not on site")
            self.db.execute("UPDATE visits SET state = 'checked_out', checked_out_at = ?, checked_out_by = ?, "
                            "flow_hash = NULL WHERE id = ?", [iso(self.clock()), by, visit_id])
            self._audit(actor, "check_out", visit_id, by)
            facts.append(VisitorCheckedOut(site=self.site, source=self.source, visit_id=visit_id, host_id=row[0],
                                           checked_out_by=by))
        return self.get(visit_id)

    # -- reception -----------------------------------------------------------------------------------------------
    def release(self, visit_id: str, actor: str) -> Visit:
        """Reception checked a held visitor and lets them in."""
        visit = self.get(visit_id)
        if visit.state != "held":
            raise VisitNotFound("not held")
        with self._atomic() as facts:
            self._audit(actor, "release_hold", visit_id)
            facts.append(self._decided(visit_id, "admitted", actor))
            return self._check_in(visit, None, by="reception")

    def refuse(self, visit_id: str, actor: str) -> Visit:
        """Reception turns a held visitor away."""
        with self._atomic() as facts:
            cur = self.db.execute("UPDATE visits SET state = 'refused', checked_out_at = ? WHERE id = ? AND "
                                  "state = 'held'", [iso(self.clock()), visit_id])
            if cur.rowcount != 1:
                raise VisitNotFound("not held")
            self._audit(actor, "refuse_hold", visit_id)
            facts.append(self._decided(visit_id, "refused", actor))
        return self.get(visit_id)

    def _decided(self, visit_id: str, decision: Literal["admitted", "refused"], actor: str) -> WatchlistHoldDecided:
        """The fact that ends a watchlist alert: the decision and the staff account, never the visitor's name."""
        return WatchlistHoldDecided(site=self.site, source=self.source, visit_id=visit_id, decision=decision,
                                    decided_by=actor)

    def pre_register(self, details: VisitorDetails, start: datetime, end: datetime, actor: str) -> Visit:
        """An expected visit with an invite code."""
        vid = new_id()
        now = self.clock()
        with self._atomic():
            code = self._unique_code("invite_code", INVITE_CODE_LEN)
            row = {"id": vid, "state": "expected", "host_id": details.host_id, "lang": self.kiosk.default_language,
                   "pre_registered": 1, "created_at": iso(now), "created_by": actor, "expected_start": iso(start),
                   "expected_end": iso(end), "invite_code": code, **self._seal_details(vid, details)}
            self.db.execute(f"INSERT INTO visits ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                            list(row.values()))
            self._audit(actor, "pre_register", vid)
        return self.get(vid)

    def cancel(self, visit_id: str, actor: str) -> None:
        """Cancel an expected visit."""
        with self._atomic():
            cur = self.db.execute("UPDATE visits SET state = 'cancelled' WHERE id = ? AND state = 'expected'",
                                  [visit_id])
            if cur.rowcount != 1:
                raise VisitNotFound("not expected")
            self._audit(actor, "cancel", visit_id)

    def local_day(self, moment: datetime | None = None) -> tuple[datetime, datetime]:
        """Start and end (UTC) of the site's calendar day around `moment`."""
        local = (moment or self.clock()).astimezone(self.tz).date()
        start = datetime.combine(local, time(0), self.tz)
        return start, datetime.combine(local + timedelta(days=1), time(0), self.tz)

    def on_site(self) -> list[Visit]:
        """Everyone checked in and not out, and those held at the kiosk, by check-in time."""
        return self._listing(f"SELECT {VISIT_COLUMNS} FROM visits WHERE state IN ('on_site', 'held') "
                             "ORDER BY checked_in_at, created_at")

    def expected_today(self) -> list[Visit]:
        """Pre-registered visits expected today that have not arrived."""
        start, end = self.local_day()
        return self._listing(f"SELECT {VISIT_COLUMNS} FROM visits WHERE state = 'expected' AND expected_start < ? "
                             "AND (expected_end >= ? OR expected_start >= ?) ORDER BY expected_start",
                             (iso(end), iso(start), iso(start)))

    def audit_log(self, limit: int = 200) -> list[dict[str, Any]]:
        """The newest audit entries."""
        return self._rows("SELECT * FROM audit ORDER BY id DESC LIMIT ?", [limit])

    def audit(self, actor: str, action: str, visit_id: str | None = None, detail: str = "") -> None:
        """Record a staff action (no personal data in `detail`)."""
        with self._atomic():
            self._audit(actor, action, visit_id, detail)

    # -- scheduled work --------------------------------------------------------------------------------------------
    def report_overstays(self) -> int:
        """A VisitorOverstayed fact, once, for each visit on site past its expected end plus the grace."""
        limit = iso(self.clock() - timedelta(minutes=self.kiosk.overstay_grace_min))
        rows = self._rows("SELECT id, host_id, expected_end FROM visits WHERE state = 'on_site' AND "
                          "overstay_reported_at IS NULL AND expected_end < ?", [limit])
        for row in rows:
            with self._atomic() as facts:
                self.db.execute("UPDATE visits SET overstay_reported_at = ? WHERE id = ?",
                                [iso(self.clock()), row["id"]])
                facts.append(VisitorOverstayed(site=self.site, source=self.source, visit_id=row["id"],
                                               host_id=row["host_id"], expected_end=parse_iso(row["expected_end"])))
        return len(rows)

    def end_of_day(self) -> int:
        """After the site's end-of-day time, check out who is still on site (once per day)."""
        now = self.clock()
        local = now.astimezone(self.tz)
        hours, minutes = (int(p) for p in self.kiosk.end_of_day.split(":"))
        if local.time() < time(hours, minutes):
            return 0
        day = local.date().isoformat()
        done = self._rows("SELECT last_run_for FROM kiosk_jobs WHERE name = 'end_of_day'")
        if done and done[0]["last_run_for"] >= day:
            return 0
        cutoff = iso(datetime.combine(local.date(), time(hours, minutes), self.tz))
        ids = [r["id"] for r in self._rows("SELECT id FROM visits WHERE state = 'on_site' AND checked_in_at < ?",
                                            [cutoff])]
        for vid in ids:
            try:
                self.check_out(vid, by="end_of_day", actor="system")
            except VisitNotFound:
                pass  # checked out by hand meanwhile
        with self._atomic():
            self.db.execute("INSERT INTO kiosk_jobs (name, last_run_for) VALUES ('end_of_day', ?) "
                            "ON CONFLICT(name) DO UPDATE SET last_run_for = excluded.last_run_for", [day])
            if ids:
                self._audit("system", "end_of_day_check_out", None, f"{len(ids)} visits")
        return len(ids)

    def drop_stale_flows(self) -> int:
        """Check-ins left half-way past their time: their data is deleted, not kept."""
        now = iso(self.clock())
        with self._atomic():
            cur = self.db.execute(
                "UPDATE visits SET state = 'abandoned', flow_hash = NULL, "
                + ", ".join(f"{c}_enc = NULL" for c in SEALED_VISIT_COLUMNS)
                + ", person_index = NULL, name_index = NULL, anonymized_at = ? "
                "WHERE state = 'in_progress' AND flow_expires_at < ?", [now, now])
            return cur.rowcount

    def anonymize_old(self) -> int:
        """Visits that ended more than `retention_days` ago lose every personal field."""
        limit = iso(self.clock() - timedelta(days=self.kiosk.retention_days))
        with self._atomic():
            cur = self.db.execute(
                "UPDATE visits SET " + ", ".join(f"{c}_enc = NULL" for c in SEALED_VISIT_COLUMNS)
                + ", person_index = NULL, name_index = NULL, invite_code = NULL, flow_hash = NULL, anonymized_at = ? "
                "WHERE anonymized_at IS NULL AND state IN ('checked_out', 'cancelled', 'refused', 'abandoned', "
                "'expected') AND COALESCE(checked_out_at, expected_end, created_at) < ?", [iso(self.clock()), limit])
            if cur.rowcount:
                self._audit("system", "anonymize", None, f"{cur.rowcount} visits older than "
                            f"{self.kiosk.retention_days} days")
            return cur.rowcount

    def erase_person(self, name: str, actor: str) -> int:
        """Delete every visit of a person (by name, matched like the watchlist); the audit keeps only a count."""
        index = self.cipher.index(normalize_name(name))
        with self._atomic():
            ids = [r[0] for r in self.db.execute("SELECT id FROM visits WHERE name_index = ?", [index]).fetchall()]
            for vid in ids:
                self.db.execute("DELETE FROM notices WHERE visit_id = ?", [vid])
                self.db.execute("UPDATE audit SET visit_id = NULL WHERE visit_id = ?", [vid])
                self.db.execute("DELETE FROM visits WHERE id = ?", [vid])
            self._audit(actor, "erase_person", None, f"{len(ids)} visits erased")
        return len(ids)
