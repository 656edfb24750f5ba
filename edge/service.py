"""The edge service: facts in from the local broker, rules, alert store, local alert topics, forwarder."""

from __future__ import annotations

import gc
import json
import logging
import queue
import sqlite3
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge import topics
from edge.alert_feed import AlertFeed
from edge.alert_store import AlertAmbiguous, AlertNotFound, AlertStore
from edge.alerts import AlertMessage, Severity
from edge.bus import OFFLINE, ONLINE, Bus, Inbound, LinkChanged
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
from edge.store import (
    TransactionLost,
    database_path,
    free_bytes,
    is_disk_full,
    is_storage_error,
    open_database,
    savepoint,
    transaction,
)

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
# With the data directory full, the batch that could not be stored is tried again after 1 s, then 2, 4, ... 30 s.
DISK_FULL_RETRY_MIN_S = 1.0
DISK_FULL_RETRY_MAX_S = 30.0
# On a clean stop, how long to wait for the local broker to acknowledge alert messages just handed over.
STOP_ACK_WAIT_S = 2.0


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
        self.rules: list[Rule] = []
        self._by_kind: dict[str, list[Rule]] = {}
        self._service_state: dict[str, bool] = {}
        self._build_rules()
        self._watermark: datetime | None = None
        self.counts: dict[str, int] = {"facts_received": 0, "facts_duplicate": 0}
        self._last_prune = 0.0
        self._last_stats = 0.0
        self._last_write = 0.0
        # While the data directory is full: the messages not stored (held, unacknowledged), when to try again.
        self._held: list[Inbound] = []
        self._disk_full_since: float | None = None
        self._retry_delay_s = DISK_FULL_RETRY_MIN_S
        self._retry_at = 0.0
        self._disk_full_attempts = 0
        self._rules_stale = False
        self.health: dict[str, Any] = {"state": "ok"}
        try:
            self._replay()
        except (sqlite3.Error, OSError) as err:
            if not is_disk_full(err):
                raise
            # A rule wrote while being fed and the disk is full: the first batch rebuilds the rules and waits.
            self._rules_stale = True

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
            self._save_acks_before_stop()
        finally:
            self.local.stop()
            if self.central is not None:
                self.central.stop()
            self.db.conn.close()
            logger.info("edge stopped")

    def step(self, timeout_s: float = TICK_S) -> None:
        """One batch: drain, handle and tick in one transaction, then ack, publish and forward.

        When the data directory is full the batch rolls back, nothing of it is acked (the broker keeps it), and
        it is held and tried again with backoff until it fits; see `_disk_full`.
        """
        if self._held and time.monotonic() < self._retry_at:
            time.sleep(min(timeout_s, self._retry_at - time.monotonic()))
            self._after_commit()
            return
        pause = self._last_write + MIN_WRITE_INTERVAL_S - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        held, self._held = self._held, []
        batch: list[Any] = [*held, *self._drain(0.0 if held else timeout_s)]
        if self.central is not None:
            batch = self._drain_nowait(self.central.inbox) + batch
        handled: list[Inbound] = [item for item in batch if isinstance(item, Inbound)]
        changes = self.db.conn.total_changes
        counts, rejected = dict(self.counts), Counter(self.rejects.counts)
        if self.outbox is not None:
            self.outbox.begin()
        try:
            with transaction(self.db):
                if self._rules_stale:
                    self._rebuild_rules()
                # What the local broker acknowledged since the last step goes with this commit, not one of its own.
                self._reap()
                for item in batch:
                    if isinstance(item, Inbound):
                        self._handle_safely(item)
                    elif isinstance(item, LinkChanged) and item.bus is self.central and self.forwarder is not None:
                        self.forwarder.on_link(item.up)
                self._tick(self._rule_time())
                self._prune()
        except (sqlite3.Error, OSError) as err:
            if not is_disk_full(err):
                if isinstance(err, sqlite3.Error):
                    logger.critical("edge database failed in a batch of %d messages; stopping without "
                                    "acknowledging it", len(handled))
                raise
            self.counts, self.rejects.counts = counts, rejected
            self._disk_full(handled)
            self._after_commit()
            return
        self.alerts.log_committed()
        if self._disk_full_since is not None:
            self._space_back(len(handled))
        if self.db.conn.total_changes != changes:
            self._last_write = time.monotonic()
        # Committed: now the broker may forget the messages, and what we made may go out.
        for item in handled:
            item.bus.ack(item)
        self._after_commit()

    def _after_commit(self) -> None:
        """Hand over what committed transactions made, forward, and say how we are."""
        self.publisher.flush()
        self.feed.flush()
        if self.forwarder is not None:
            self.forwarder.pump(time.monotonic())
        self._publish_stats()

    def _disk_full(self, batch: list[Inbound]) -> None:
        """The batch's transaction was rolled back for want of space: hold its messages (unacknowledged, so
        nothing is lost even if we are stopped now), bring memory back in line with the database, try again
        later. Only the first failure of a spell is logged, at CRITICAL, with the data directory's free space.
        """
        self._held = batch
        self.alerts.reload()
        if self.outbox is not None:
            self.outbox.reload()
        self.feed.rolled_back()
        self.publisher.rolled_back()
        self._rules_stale = True  # rules may have taken in facts that were not stored
        now = time.monotonic()
        data_dir = self.settings.data_dir
        free = free_bytes(data_dir)
        if self._disk_full_since is None:
            self._disk_full_since = now
            self._retry_delay_s = DISK_FULL_RETRY_MIN_S
            self._disk_full_attempts = 0
            logger.critical(
                "edge data directory %s is full (%s bytes free): cannot store %d messages; holding them "
                "unacknowledged and trying again every %g-%g s (the broker keeps what comes meanwhile)",
                data_dir, free if free is not None else "unknown", len(batch), DISK_FULL_RETRY_MIN_S,
                DISK_FULL_RETRY_MAX_S)
        else:
            self._retry_delay_s = min(self._retry_delay_s * 2, DISK_FULL_RETRY_MAX_S)
            logger.debug("edge data directory %s still full (%s bytes free)", data_dir, free)
        self._disk_full_attempts += 1
        self._retry_at = now + self._retry_delay_s
        self._set_health({"state": "degraded", "reason": "disk_full", "data_dir": str(data_dir),
                          "free_bytes": free, "held_messages": len(batch),
                          "attempts": self._disk_full_attempts,
                          "since": (utcnow() - timedelta(seconds=now - self._disk_full_since)).isoformat()})
        self._save_acks()

    def _space_back(self, stored: int) -> None:
        assert self._disk_full_since is not None
        logger.warning("edge data directory %s has room again (%s bytes free) after %.0f s; stored the %d "
                       "messages held back", self.settings.data_dir, free_bytes(self.settings.data_dir),
                       time.monotonic() - self._disk_full_since, stored)
        self._disk_full_since = None
        self._retry_delay_s = DISK_FULL_RETRY_MIN_S
        self._set_health({"state": "ok"})

    def _set_health(self, health: dict[str, Any]) -> None:
        """Change what the retained stats say about our health, and say it now, not at the next interval."""
        self.health = health
        self._last_stats = 0.0

    def _save_acks(self) -> None:
        """Record the broker's acknowledgements in a transaction of their own: a few bytes may fit where the
        batch did not, and a restart then sends nothing the broker already has."""
        try:
            with transaction(self.db):
                self._reap()
        except sqlite3.Error as err:
            self.feed.rolled_back()
            self.publisher.rolled_back()
            logger.debug("cannot record the broker's acknowledgements yet: %s", err)

    def _save_acks_before_stop(self) -> None:
        """On a clean stop, wait (briefly) for the broker to acknowledge the alert messages just handed over,
        and record it: a restart must not send them again."""
        end = time.monotonic() + STOP_ACK_WAIT_S
        while self.feed.outstanding and self.local.connected.is_set() and time.monotonic() < end:
            try:
                mid = self.local.published.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                break
            if not self.feed.release(mid):
                self.publisher.take([mid])
        self._save_acks()

    def _reap(self) -> None:
        self._reap_into_memory()
        self.publisher.release([])
        self.feed.save()

    def _reap_into_memory(self) -> None:
        """Take the broker's acknowledgements off the queue; the publisher's rows wait for its next release."""
        mids: list[int] = []
        while True:
            try:
                mids.append(self.local.published.get_nowait())
            except queue.Empty:
                break
        self.publisher.take([mid for mid in mids if not self.feed.release(mid)])

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

        Except trouble of the database itself: that is not the message's fault, so it propagates and nothing of
        the batch commits or is acked. A full disk is waited out (step() holds the batch and tries again); any
        other (I/O error, locked) stops the edge, and the broker delivers it all again to the restarted one.
        """
        try:
            with savepoint(self.db):
                self._handle(item)
        except Exception as err:
            self._reraise_storage_error(err)
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
            except Exception as err:
                self._reraise_storage_error(err)
                logger.exception("rule %s failed on fact %s; continuing", rule.name, fact.event_id)

    def _tick(self, now: datetime) -> None:
        self.alerts.roll_log_window()
        for rule in self.rules:
            try:
                rule.on_tick(now, self)
            except Exception as err:
                self._reraise_storage_error(err)
                logger.exception("rule %s failed on tick; continuing", rule.name)

    def _reraise_storage_error(self, err: Exception) -> None:
        """A rule or handler may fail and the batch go on, but not when the database failed under it: sqlite
        may have undone the whole transaction, and what follows would commit without it and be acked. So the
        batch ends here: a full disk is waited out (step() holds the batch), anything else stops the edge.
        A rule that caught the database's error and raised its own is caught out by the lost transaction."""
        if is_storage_error(err):
            raise err
        if not self.db.conn.in_transaction:
            raise TransactionLost(f"the transaction was rolled back under {type(err).__name__}: {err}") from err

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

    def _rebuild_rules(self) -> None:
        """Fresh rules fed from the stored facts, as at a start: a rolled-back batch's facts are not in them."""
        self._build_rules()
        self._replay(logging.DEBUG)  # on every try while the disk is full: the CRITICAL line said enough
        self._rules_stale = False

    def _build_rules(self) -> None:
        self.rules = build_rules(self.settings.edge.rules)
        self._by_kind = {}
        for rule in self.rules:
            for kind in rule.kinds:
                self._by_kind.setdefault(kind, []).append(rule)
        self._service_state = {}

    def _replay(self, log_level: int = logging.INFO) -> None:
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
            logger.log(log_level, "replayed %d facts into the rules in %.2f s", len(rows), time.monotonic() - started)

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
        out["health"] = self.health
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
