"""The edge service: facts in from the local broker, rules, alert store, local alert topics, forwarder."""

from __future__ import annotations

import gc
import json
import logging
import queue
import sqlite3
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge import topics
from edge.alert_feed import AlertFeed
from edge.alert_store import AlertAmbiguous, AlertNotFound, AlertStore
from edge.alerts import AlertMessage, Severity
from edge.bus import OFFLINE, ONLINE, WAKE, Bus, Inbound, LinkChanged
from edge.config import Settings
from edge.events import (
    DeviceCameOnline,
    DeviceWentOffline,
    Event,
    PayloadError,
    UnknownKind,
    parse_fact,
    utcnow,
)
from edge.forwarder import Forwarder
from edge.migrations import MIGRATIONS
from edge.outbox import Outbox
from edge.publisher import DurablePublisher
from edge.rejects import RejectLog
from edge.rules.base import AlertDraft, Rule
from edge.rules.registry import build_rules
from edge.services import ServiceSpec
from edge.store import database_path, open_database, savepoint, transaction

logger = logging.getLogger(__name__)

TICK_S = 0.25
# Small enough that the forwarder gets a turn several times a second under a flood of facts.
BATCH_MAX = 500
# A trickle of facts would cost a commit (an fsync, ~0.1-0.4 ms of CPU here) each: steps that wrote are at
# least this far apart, so one commit carries what arrived meanwhile. After a quiet spell nothing waits.
MIN_WRITE_INTERVAL_S = 0.005
REPLAY_MAX_FACTS = 200_000
PRUNE_INTERVAL_S = 3600.0
AVAILABILITY_SOURCE = "edge/availability"
# Rule state and the index of foldable alerts live long: each full collection walks all of it (70+ ms with
# the benchmark's 20,000 open doors, paid as latency). Start-up objects are frozen out of collection, and a
# full collection waits for 1,000 younger ones instead of 10; young garbage is collected as before.
GC_THRESHOLDS = (700, 10, 1000)
# The publisher (command replies) and the alert feed share the local client's message ids (1-65535).
PUBLISHER_OUTSTANDING = 30_000
ALERT_FEED_OUTSTANDING = 30_000


class AlertCommand(BaseModel):
    """A request to acknowledge or resolve an alert (from `sitewarden alerts ack|resolve`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str = Field(pattern=r"^[A-Za-z0-9-]{1,64}$", description="Where the reply goes.")
    alert: str = Field(min_length=1, max_length=64, description="Alert id or a unique fragment of it.")
    by: str = Field(min_length=1, max_length=128, description="Who does it.")
    note: str | None = Field(default=None, max_length=2000, description="Why, for the record.")


class EdgeService:
    """One thread owns the database: it drains the inbox in batches, commits, then publishes and acks."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.site = settings.site.id
        rules_cfg = settings.edge.rules
        fwd = settings.edge.forwarder
        self.db = open_database(database_path(settings.data_dir, "edge"), MIGRATIONS)
        self.inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.rejects = RejectLog("edge")
        # No paho window on either link: the publisher and the forwarder bound what they hand over.
        self.local = Bus(settings.mqtt, client_id=f"sitewarden-{self.site}-edge", site=self.site, service="edge",
                         inbox=self.inbox, clean_session=False, manual_ack=True, max_in_flight=0)
        self.publisher = DurablePublisher(self.db, self.local, max_outstanding=PUBLISHER_OUTSTANDING)
        self.feed = AlertFeed(self.db, self.local, self.site, max_outstanding=ALERT_FEED_OUTSTANDING)
        self.outbox: Outbox | None = None
        self.forwarder: Forwarder | None = None
        self.central: Bus | None = None
        if fwd.enabled:
            self.outbox = Outbox(self.db, fwd.outbox_max_rows, on_overflow=self._outbox_overflowed)
            # Its own inbox: console confirmations must not queue behind a flood of facts.
            self.central = Bus(fwd.broker, client_id=f"sitewarden-{self.site}-forwarder", site=self.site,
                               service="edge", clean_session=False,
                               max_in_flight=0, wake=self.inbox)
            self.forwarder = Forwarder(self.outbox, self.central, site=self.site, max_in_flight=fwd.max_in_flight,
                                       ack_timeout_s=fwd.ack_timeout_s, rejects=self.rejects)
        self.alerts = AlertStore(self.db, self.site, rules_cfg.suppression_window_s, emit=self._emit)
        self.rules = build_rules(rules_cfg)
        self._by_kind: dict[str, list[Rule]] = {}
        for rule in self.rules:
            for kind in rule.kinds:
                self._by_kind.setdefault(kind, []).append(rule)
        self._service_state: dict[str, bool] = {}
        self._watermark: datetime | None = None
        self.counts: dict[str, int] = {"facts_received": 0, "facts_duplicate": 0}
        self._last_prune = 0.0
        self._last_stats = 0.0
        self._last_write = 0.0
        self._replay()

    # RuleContext

    def raise_alert(self, draft: AlertDraft) -> None:
        """Rules call this (inside the batch transaction)."""
        self.alerts.raise_alert(draft)

    def resolve(self, kind: str, trigger: str, note: str, by: str | None = None) -> None:
        """Rules call this to close what they raised."""
        self.alerts.resolve_trigger(kind, trigger, by=by or f"rule:{kind}", note=note)

    # wiring

    def _emit(self, message: AlertMessage, payload: bytes) -> None:
        # Stored in alert_messages by now: the feed publishes it locally from there after the commit.
        if self.outbox is not None:
            self.outbox.add(message.seq, message.alert.severity.rank)

    def _outbox_overflowed(self, max_rows: int) -> None:
        now = utcnow()
        self.alerts.raise_alert(AlertDraft(
            # Critical, so that it outlives the messages it reports on when eviction goes on.
            kind="outbox_overflowed", severity=Severity.CRITICAL,
            title=f"Alert outbox full ({max_rows} messages): oldest low-severity alerts are being dropped",
            dedupe_key="outbox_overflowed", trigger=now.isoformat(), at=now,
        ))

    # the loop

    def run(self, stop: threading.Event) -> None:
        """Run until `stop` is set."""
        self.local.subscribe(topics.facts_filter(self.site))
        self.local.subscribe(topics.status_filter(self.site))
        self.local.subscribe(topics.commands_filter(self.site, "edge"))
        self.local.start()
        if self.central is not None:
            self.central.subscribe(topics.console_ack_topic(self.site))
            self.central.start()
        logger.info("edge running for site %s (%d rules, outbox %s)", self.site, len(self.rules),
                    self.outbox.depth if self.outbox else "off")
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        try:
            while not stop.is_set():
                self.step()
        finally:
            self.local.stop()
            if self.central is not None:
                self.central.stop()
            self.db.conn.close()
            logger.info("edge stopped")

    def step(self, timeout_s: float = TICK_S) -> None:
        """One batch: drain, handle and tick in one transaction, then ack, publish and forward."""
        pause = self._last_write + MIN_WRITE_INTERVAL_S - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        batch = self._drain(timeout_s)
        if self.central is not None:
            batch = self._drain_nowait(self.central.inbox) + batch
        handled: list[Inbound] = []
        changes = self.db.conn.total_changes
        with transaction(self.db):
            # What the local broker acknowledged since the last step goes with this commit, not one of its own.
            self._reap()
            for item in batch:
                if item is WAKE:
                    continue
                if isinstance(item, LinkChanged):
                    if item.bus is self.central and self.forwarder is not None:
                        self.forwarder.on_link(item.up)
                    continue
                self._handle_safely(item)
                handled.append(item)
            self._tick(self._rule_time())
            self._prune()
        if self.db.conn.total_changes != changes:
            self._last_write = time.monotonic()
        # Committed: now the broker may forget the messages, and what we made may go out.
        for item in handled:
            item.bus.ack(item)
        self.publisher.flush()
        self.feed.flush()
        if self.forwarder is not None:
            self.forwarder.pump(time.monotonic())
        self._publish_stats()

    def _reap(self) -> None:
        mids: list[int] = []
        while True:
            try:
                mids.append(self.local.published.get_nowait())
            except queue.Empty:
                break
        self.publisher.release([mid for mid in mids if not self.feed.release(mid)])
        self.feed.save()

    def _rule_time(self) -> datetime:
        """The time rules decide by: the wall clock, or while a backlog is worked off, the newest fact's time.

        After an outage the broker hands over minutes of queued facts; judged by the wall clock, every
        heartbeat device would look silent and every door open at a batch boundary held or forced.
        """
        now = utcnow()
        if self._watermark is not None and not self.inbox.empty():
            return min(now, self._watermark)
        return now

    def _drain(self, timeout_s: float) -> list[Any]:
        if self.central is not None and not self.central.inbox.empty():
            timeout_s = 0.0
        # A WAKE on this inbox says the central inbox has something.
        try:
            first = self.inbox.get(timeout=timeout_s) if timeout_s > 0 else self.inbox.get_nowait()
        except queue.Empty:
            return []
        return [first, *self._drain_nowait(self.inbox, BATCH_MAX - 1)]

    @staticmethod
    def _drain_nowait(inbox: queue.SimpleQueue[Any], limit: int = 100_000) -> list[Any]:
        items: list[Any] = []
        while len(items) < limit:
            try:
                items.append(inbox.get_nowait())
            except queue.Empty:
                break
        return items

    def _handle_safely(self, item: Inbound) -> None:
        """Whatever a message does to a handler, it is rejected and acked: one message never stops the edge.

        Except trouble of the database itself (disk full, I/O error, locked): that is not the message's fault,
        so it propagates, nothing of the batch commits or is acked, and the broker delivers it all again to
        the restarted edge.
        """
        try:
            with savepoint(self.db):
                self._handle(item)
        except sqlite3.OperationalError:
            logger.critical("edge database failed while handling %s; stopping without acknowledging the batch",
                            item.topic)
            raise
        except Exception as err:
            self.rejects.reject(item.topic, "handler_error", f"{type(err).__name__}: {err}", item.payload, err)

    def _handle(self, item: Inbound) -> None:
        topic = topics.parse_topic(item.topic)
        if topic is None or topic.site != self.site:
            self.rejects.reject(item.topic, "unknown_topic", "not a SiteWarden topic of this site", item.payload)
        elif topic.kind == "fact":
            self._handle_fact(item, topic)
        elif topic.kind == "status":
            self._handle_status(item, topic.service or "")
        elif topic.kind == "command" and topic.service == "edge":
            self._handle_command(item, topic.name or "")
        elif topic.kind == "console_ack" and item.bus is self.central and self.forwarder is not None:
            self.forwarder.on_ack(item.payload, item.topic)
        # Anything else that matches our filters (other services' commands and stats) is not ours.

    def _handle_fact(self, item: Inbound, topic: topics.Topic) -> None:
        try:
            fact = parse_fact(item.payload)
        except UnknownKind as err:
            self.rejects.reject(item.topic, err.reason, err.detail, item.payload)
            return
        except PayloadError as err:
            self.rejects.reject(item.topic, err.reason, err.detail, item.payload)
            return
        if fact.kind != topic.name or fact.site != self.site:  # type: ignore[attr-defined]
            self.rejects.reject(item.topic, "topic_mismatch",
                                f"payload says site {fact.site} kind {fact.kind}",  # type: ignore[attr-defined]
                                item.payload)
            return
        self.process_fact(fact, item.payload.decode())

    def process_fact(self, fact: Event, payload: str | None = None) -> bool:
        """Store a fact and run the rules on it; False if it was seen before (a redelivery)."""
        self.counts["facts_received"] += 1
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO facts (event_id, kind, source, occurred_at, payload) VALUES (?, ?, ?, ?, ?)",
            [fact.event_id, fact.kind, fact.source, fact.occurred_at.timestamp(),  # type: ignore[attr-defined]
             payload if payload is not None else fact.model_dump_json()],
        )
        if cursor.rowcount == 0:
            self.counts["facts_duplicate"] += 1
            return False
        occurred = fact.occurred_at  # type: ignore[attr-defined]
        if self._watermark is None or occurred > self._watermark:
            self._watermark = occurred
        self._run_rules(fact)
        return True

    def _run_rules(self, fact: Event) -> None:
        for rule in self._by_kind.get(fact.kind, ()):  # type: ignore[attr-defined]
            try:
                rule.on_fact(fact, self)
            except Exception:
                logger.exception("rule %s failed on fact %s; continuing", rule.name, fact.event_id)

    def _tick(self, now: datetime) -> None:
        self.alerts.roll_log_window()
        for rule in self.rules:
            try:
                rule.on_tick(now, self)
            except Exception:
                logger.exception("rule %s failed on tick; continuing", rule.name)

    def _handle_status(self, item: Inbound, service: str) -> None:
        if service == "edge":
            return
        if item.payload not in (ONLINE, OFFLINE):
            self.rejects.reject(item.topic, "bad_status", "want online or offline", item.payload)
            return
        online = item.payload == ONLINE
        if self._service_state.get(service) == online:
            return
        self._service_state[service] = online
        base = {"site": self.site, "source": AVAILABILITY_SOURCE, "device_id": service, "device_type": "service"}
        fact: Event = DeviceCameOnline(**base) if online else DeviceWentOffline(
            **base, reason="availability topic says offline")
        self.process_fact(fact)

    def _handle_command(self, item: Inbound, name: str) -> None:
        if name not in ("alert_ack", "alert_resolve"):
            self.rejects.reject(item.topic, "unknown_command", name, item.payload)
            return
        try:
            command = AlertCommand.model_validate_json(item.payload)
        except ValidationError as err:
            self.rejects.reject(item.topic, "bad_command", str(err).splitlines()[0], item.payload)
            return
        reply: dict[str, Any]
        try:
            if name == "alert_ack":
                alert, changed = self.alerts.acknowledge(command.alert, command.by, command.note)
            else:
                alert, changed = self.alerts.resolve(command.alert, command.by, command.note)
            reply = {"ok": True, "changed": changed, "alert": json.loads(alert.model_dump_json())}
        except (AlertNotFound, AlertAmbiguous) as err:
            reply = {"ok": False, "error": str(err)}
        self.publisher.enqueue(topics.reply_topic(self.site, "edge", command.request_id),
                               json.dumps(reply).encode())

    def _replay(self) -> None:
        """Rebuild rule state from recent stored facts; alerts already raised are recognised by trigger."""
        window = self.settings.edge.rules.replay_window_s
        since = (utcnow() - timedelta(seconds=window)).timestamp()
        rows = self.db.execute(
            # In the order they arrived (rowid), as the rules saw them live: some rules (tailgating) depend on it.
            "SELECT payload FROM (SELECT payload, rowid AS arrived FROM facts WHERE occurred_at >= ? "
            "ORDER BY rowid DESC LIMIT ?) ORDER BY arrived",
            [since, REPLAY_MAX_FACTS],
        ).fetchall()
        started = time.monotonic()
        # No tick here: time-based decisions wait for the facts the broker kept for us while we were down.
        with transaction(self.db):
            for (payload,) in rows:
                try:
                    fact = parse_fact(payload.encode())
                except PayloadError as err:
                    logger.warning("skipping a stored fact this version cannot read: %s", err)
                    continue
                if fact.source == AVAILABILITY_SOURCE:
                    self._service_state[fact.device_id] = fact.kind == "device_came_online"  # type: ignore
                self._run_rules(fact)
        if rows:
            logger.info("replayed %d facts into the rules in %.2f s", len(rows), time.monotonic() - started)

    def _prune(self) -> None:
        now = time.monotonic()
        if now - self._last_prune < PRUNE_INTERVAL_S:
            return
        self._last_prune = now
        cutoff = (utcnow() - timedelta(days=self.settings.edge.fact_retention_days)).timestamp()
        removed = self.db.execute("DELETE FROM facts WHERE occurred_at < ?", [cutoff]).rowcount
        if removed:
            logger.info("pruned %d facts older than %g days", removed, self.settings.edge.fact_retention_days)

    def stats(self) -> dict[str, Any]:
        """Counters for the status topic and for tests."""
        out: dict[str, Any] = dict(self.counts)
        out["rejected"] = dict(self.rejects.counts)
        out["alerts_raised"] = self.alerts.raised_total
        out["alerts_folded"] = self.alerts.folded_total
        out["publish_pending"] = self.publisher.pending() + self.feed.pending()
        if self.outbox is not None and self.forwarder is not None:
            out |= {"outbox_depth": self.outbox.depth, "outbox_evicted": self.outbox.evicted_total,
                    "forwarded": self.forwarder.sent_total, "confirmed": self.forwarder.confirmed_total,
                    "in_flight": self.forwarder.in_flight, "resends": self.forwarder.resends}
        return out

    def _publish_stats(self) -> None:
        now = time.monotonic()
        if now - self._last_stats < self.settings.edge.stats_interval_s:
            return
        self._last_stats = now
        if self.local.connected.is_set():
            self.local.publish(topics.stats_topic(self.site, "edge"), json.dumps(self.stats()).encode(),
                               qos=0, retain=True)


def run(settings: Settings, stop: threading.Event) -> None:
    """Entry point of `sitewarden run edge`."""
    EdgeService(settings).run(stop)


SERVICE = ServiceSpec(
    name="edge",
    summary="rules, alert store, forwarder to the console",
    run=run,
)
