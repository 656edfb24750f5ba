"""`sitewarden run netmon`: passive capture on the mirror port and the monitor-mode radio, findings as facts.

One thread reads every source (select() over the live sockets, replays by their clock) through one detector
engine; a second turns findings into facts: a pcap snippet cut to the headers and scapy's one-line summaries
as evidence, then stored and published (FactProducer). New stations go into the inventory once a second;
capture counters, the kernel's drops among them, are published retained on `sitewarden/<site>/status/netmon/stats`.
A source that fails (the interface went down) is reopened every few seconds; nothing a frame holds can stop
the service.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import select
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge import topics
from edge.config import Settings
from edge.events import FACT_TYPES, Event, NetworkFinding
from edge.producer import FactProducer
from edge.retention import prune_files
from edge.services import ServiceCannotStart, ServiceSpec
from netmon.capture import LINK_NAMES, CaptureError, LiveSource, ReplaySource, filter_expression, link_type
from netmon.engine import Engine
from netmon.evidence import summaries, write_snippet
from netmon.findings import Finding
from netmon.inventory import Inventory
from netmon.packets import DLT_EN10MB, DLT_IEEE802_11_RADIO, mac_text
from netmon.startup import make_engine, open_inventory, site_inventory_path

logger = logging.getLogger(__name__)

SERVICE_NAME = "netmon"
FLUSH_EVERY_S = 1.0
LAST_SEEN_EVERY_S = 60.0
PRUNE_EVERY_S = 600.0
REOPEN_EVERY_S = 2.0
QUEUE_LIMIT = 10_000  # findings waiting for their evidence and publish; a full queue holds the capture back
MAX_SUMMARIES = 16

FINDING_TYPES: dict[str, type[NetworkFinding]] = {
    cls.model_fields["kind"].default: cls for cls in FACT_TYPES if issubclass(cls, NetworkFinding)}

Source = LiveSource | ReplaySource


def device_name(name: str) -> str:
    """A source name as an MQTT topic segment (lower case, [a-z0-9_.-])."""
    return re.sub(r"[^a-z0-9_.-]", "-", name.lower()).lstrip("_.-")[:63] or "capture"


class NetmonService:
    """The sources, the engine, the inventory and the way out for facts."""

    def __init__(self, settings: Settings, linktypes: dict[str, int] | None = None) -> None:
        self.settings = settings
        self.netmon = settings.netmon
        self.site = settings.site.id
        self.evidence_dir = self.netmon.evidence_dir or settings.data_dir / "netmon" / "evidence"
        self.inventory_path = site_inventory_path(settings.data_dir)
        self.producer = FactProducer(settings, SERVICE_NAME)
        # interface -> pcap link type, instead of the interface's own; only for tests that carry radiotap
        # frames over a veth pair (no monitor-mode radio there)
        self._linktypes = linktypes or {}
        self.sources: list[Source] = []
        self.engine: Engine | None = None
        self.inventory: Inventory | None = None
        self.counts: Counter[str] = Counter()
        self._queue: queue.Queue[tuple[Source, int, Finding] | None] = queue.Queue(maxsize=QUEUE_LIMIT)
        self._seq = 0
        self._logged: set[str] = set()
        self._stored_macs: set[str] = set()  # stations whose fact is stored: their inventory row may be written
        self._evidence_failing = False
        self._stop = threading.Event()

    # -- sources -----------------------------------------------------------------------------------------------

    def open_sources(self) -> list[Source]:
        """Every configured source, opened; ServiceCannotStart names the setting of one that cannot be."""
        n = self.netmon
        sources: list[Source] = []
        wanted = (("netmon.interface", n.interface, DLT_EN10MB),
                  ("netmon.monitor_interface", n.monitor_interface, DLT_IEEE802_11_RADIO))
        try:
            for key, interface, want in wanted:
                if interface is None:
                    continue
                try:
                    linktype = self._linktypes.get(interface) or link_type(interface)
                    if linktype != want:
                        raise CaptureError(_wrong_link(interface, want))
                    expression = filter_expression(n, linktype)
                    if expression is None:
                        logger.warning("%s: no enabled detector wants frames from %s; not capturing there", key,
                                       interface)
                        continue
                    source = LiveSource(interface, linktype, expression, n.receive_buffer_bytes)
                    source.open()
                except CaptureError as err:
                    raise ServiceCannotStart(f"{key}: {err}") from err
                sources.append(source)
                logger.info("capturing on %s (%s, %d-byte receive buffer) behind the filter: %s", interface,
                            LINK_NAMES[linktype], source.buffer_granted, expression)
            for i, replay in enumerate(n.replay):
                key = f"netmon.replay.{i}.path"
                if not replay.path.is_file():
                    raise ServiceCannotStart(f"{key}: {replay.path} is not a file")
                replaying = ReplaySource(replay.path, speed=replay.speed, loop=replay.loop)
                if any(s.name == replaying.name for s in sources):
                    replaying.name = f"{replaying.name}-{i}"
                try:
                    replaying.check()  # reads the first frame: a file that is not a capture stops the start
                except (CaptureError, ValueError) as err:
                    raise ServiceCannotStart(f"{key}: {err}") from err
                sources.append(replaying)
                logger.info("replaying %s at %gx%s", replay.path, replay.speed, ", looping" if replay.loop else "")
        except ServiceCannotStart:
            for source in sources:
                if isinstance(source, LiveSource):
                    source.close()
            raise
        if not sources:
            logger.warning("netmon: no netmon.interface, netmon.monitor_interface or netmon.replay is set; "
                           "nothing to watch (the service idles)")
        return sources

    def _reopen(self, source: LiveSource) -> None:
        if not source.is_up():  # a socket bound to a down interface would only fail again
            return
        try:
            source.open()
        except CaptureError as err:
            source.stats.last_error = str(err)
            return
        source.stats.reopened += 1
        logger.info("%s: capturing again", source.name)

    def _failed(self, source: LiveSource, err: OSError) -> None:
        source.stats.read_errors += 1
        source.stats.last_error = str(err)
        logger.error("%s: capture failed (%s); reopening every %g s", source.name, err, REOPEN_EVERY_S)
        source.close()

    # -- findings ----------------------------------------------------------------------------------------------

    def _report(self, source: Source, linktype: int, found: list[Finding]) -> None:
        """Hand findings to the publisher. A full queue holds the capture back (the kernel buffer absorbs the
        wait; what it cannot hold shows as kernel drops) until the service is stopping."""
        for finding in found:
            while True:
                try:
                    self._queue.put((source, linktype, finding), timeout=0.5)
                    break
                except queue.Full:
                    if self._stop.is_set():
                        self.counts["findings_lost_at_stop"] += 1
                        break

    def fact_of(self, source: Source, linktype: int, finding: Finding) -> Event:
        """The fact for a finding, its evidence written (a failed write costs the evidence, not the fact)."""
        stamp = datetime.fromtimestamp(finding.ts, UTC)
        packets: list[str] = []
        evidence = None
        if finding.frames:
            frames = list(finding.frames[-self.netmon.evidence.max_frames:])
            packets = summaries(linktype, frames[-MAX_SUMMARIES:])
            self._seq += 1
            path = self.evidence_dir / f"{stamp:%Y%m%d}" / f"{stamp:%H%M%S-%f}-{finding.kind}-{self._seq}.pcap"
            try:
                write_snippet(path, linktype, frames)
                data_dir = self.settings.data_dir
                evidence = str(path.relative_to(data_dir)) if path.is_relative_to(data_dir) else str(path)
                if self._evidence_failing:
                    self._evidence_failing = False
                    logger.info("evidence snippets are saved again (%s)", path.parent)
            except OSError as err:
                self.counts["evidence_errors"] += 1
                if not self._evidence_failing:  # once per outage (a full disk fails every finding)
                    self._evidence_failing = True
                    logger.error("evidence for %s not saved at %s: %s; facts go out without evidence until "
                                 "this works again", finding.key, path, err)
        cls = FINDING_TYPES[finding.kind]
        return cls(site=self.site, source=f"{SERVICE_NAME}/{device_name(source.name)}", occurred_at=stamp,
                   interface=source.label, signature=finding.signature, packets=packets, evidence=evidence,
                   **finding.fields)

    def _publish_loop(self) -> None:
        next_prune = time.monotonic()
        while True:
            if time.monotonic() >= next_prune:  # here, not in the capture thread: walking a folder takes time
                next_prune = time.monotonic() + PRUNE_EVERY_S
                self._prune_evidence()
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                continue
            if item is None:
                return
            source, linktype, finding = item
            try:
                self.producer.publish(self.fact_of(source, linktype, finding))
                self.counts["published"] += 1
                if finding.kind == "station_seen":
                    self._stored_macs.add(finding.fields["mac"])
            except Exception as err:  # one finding that cannot become a fact must not stop the others
                self.counts["publish_errors"] += 1
                if finding.kind not in self._logged:
                    self._logged.add(finding.kind)
                    logger.exception("finding %s (%s) could not be published: %s; later failures of this kind "
                                     "are only counted", finding.key, finding.fields, err)

    # -- status ------------------------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The capture counters: per source, and through the engine."""
        out: dict[str, Any] = {"sources": {}}
        for source in self.sources:
            s = source.stats
            entry: dict[str, Any] = {"label": source.label, "open": s.open, "received": s.received}
            if isinstance(source, LiveSource):
                entry |= {"link": LINK_NAMES[source.linktype], "filter": source.expression,
                          "kernel_received": s.kernel_received, "kernel_dropped": s.kernel_dropped,
                          "receive_buffer_bytes": source.buffer_granted, "read_errors": s.read_errors,
                          "reopened": s.reopened, "last_error": s.last_error}
            entry |= s.extra
            out["sources"][source.name] = entry
        if self.engine is not None:
            c = self.engine.counters
            out |= {"received": c.received, "parsed": c.parsed, "malformed": c.malformed,
                    "malformed_reasons": dict(c.reasons), "findings": c.findings, "suppressed": c.suppressed,
                    "state_dropped": self.engine.state_dropped()}
            out["detector_errors"] = c.detector_errors
        out |= {name: self.counts[name] for name in ("published", "publish_errors", "evidence_errors",
                                                     "inventory_errors")}
        out["waiting"] = self._queue.qsize()
        return out

    def _publish_stats(self) -> None:
        for source in self.sources:
            if isinstance(source, LiveSource):
                source.poll_kernel()
        if self.producer.bus.connected.is_set():
            self.producer.bus.publish(topics.stats_topic(self.site, SERVICE_NAME),
                                      json.dumps(self.stats()).encode(), qos=0, retain=True)

    # -- housekeeping ------------------------------------------------------------------------------------------

    def _flush_inventory(self, with_last_seen: bool) -> None:
        assert self.inventory is not None and self.engine is not None
        last_seen = ap_last_seen = None
        if with_last_seen:
            last_seen = {mac_text(mac): ts for mac, ts in self.engine.lan.seen.items()}
            ap_last_seen = {(mac_text(bssid), ssid.decode("utf-8", "replace")): ts
                            for (bssid, ssid, _, _), ts in self.engine.wifi.checked.items() if ssid}
        try:
            self.inventory.flush(last_seen, ap_last_seen, ready=self._stored_macs)
        except Exception as err:  # a locked or full disk: the stations stay known in memory
            self.counts["inventory_errors"] += 1
            logger.error("netmon: writing the station inventory failed: %s", err)

    def _prune(self) -> None:
        assert self.inventory is not None
        n = self.netmon
        try:
            gone = self.inventory.prune(n.mac_retention_days * 86400)
            if gone:
                logger.info("netmon: %d stations and access points unseen for %g days removed from the inventory",
                            gone, n.mac_retention_days)
        except Exception as err:
            logger.error("netmon: inventory retention sweep failed: %s", err)

    def _prune_evidence(self) -> None:
        n = self.netmon
        try:
            if self.evidence_dir.is_dir():
                removed = prune_files(self.evidence_dir, "*.pcap", n.evidence.max_age_days * 86400,
                                      n.evidence.max_bytes)
                if removed:
                    logger.info("netmon: %d old evidence snippets deleted", removed)
        except Exception as err:
            logger.error("netmon: evidence retention sweep failed: %s", err)

    # -- the loop ----------------------------------------------------------------------------------------------

    def _capture(self, stop: threading.Event) -> None:
        engine = self.engine
        assert engine is not None
        live = [s for s in self.sources if isinstance(s, LiveSource)]
        replays = [s for s in self.sources if isinstance(s, ReplaySource)]
        wired = next((s for s in self.sources if s.linktype == DLT_EN10MB), None)
        now = time.monotonic()
        next_flush, next_seen, next_prune, next_stats, next_reopen = now, now + LAST_SEEN_EVERY_S, now, now, now
        feed = engine.feed
        while not stop.is_set():
            timeout = max(0.0, min(0.5, next_stats - time.monotonic()))
            for replay in replays:
                timeout = min(timeout, replay.due_in())
            open_socks = [s for s in live if s.sock is not None]
            ready: list[LiveSource] = []
            if open_socks:
                ready = select.select(open_socks, [], [], timeout)[0]
            elif timeout > 0:
                stop.wait(timeout)
            for source in ready:
                try:
                    frames = source.read()
                except OSError as err:
                    self._failed(source, err)
                    continue
                linktype = source.linktype
                for ts, frame in frames:
                    found = feed(linktype, ts, frame)
                    if found:
                        self._report(source, linktype, found)
            for replay in replays:
                for linktype, ts, frame in replay.read():
                    found = feed(linktype, ts, frame)
                    if found:
                        self._report(replay, linktype, found)
            found = engine.idle(time.time())
            if found and wired is not None:
                self._report(wired, wired.linktype, found)
            now = time.monotonic()
            if now >= next_flush:
                next_flush = now + FLUSH_EVERY_S
                self._flush_inventory(with_last_seen=now >= next_seen)
                if now >= next_seen:
                    next_seen = now + LAST_SEEN_EVERY_S
            if now >= next_stats:
                next_stats = now + self.netmon.stats_interval_s
                self._publish_stats()
            if now >= next_prune:
                next_prune = now + PRUNE_EVERY_S
                self._prune()
            if now >= next_reopen:
                next_reopen = now + REOPEN_EVERY_S
                for source in live:
                    if source.sock is None:
                        self._reopen(source)

    def open_engine(self) -> Engine:
        """The detectors over the site's inventory, set up as `sitewarden netmon replay` sets them up."""
        self.inventory = open_inventory(self.netmon, self.inventory_path, deferred=True)
        self.engine = make_engine(self.netmon, self.inventory)
        return self.engine

    def run(self, stop: threading.Event) -> None:
        """Capture until `stop` is set."""
        self._stop = stop
        self.sources = self.open_sources()
        publisher = threading.Thread(target=self._publish_loop, name="netmon-publish", daemon=True)
        try:
            self.open_engine()
            self.producer.start()
            publisher.start()
            self._capture(stop)
        finally:
            for source in self.sources:
                if isinstance(source, LiveSource):
                    source.close()
            if publisher.is_alive():
                self._queue.put(None)
                publisher.join(10)
                if publisher.is_alive():
                    logger.warning("netmon: stopping with %d findings not yet published (the next start does not "
                                   "see them again)", self._queue.qsize())
            if self.inventory is not None and self.engine is not None:
                self._flush_inventory(with_last_seen=True)
                self._publish_stats()
                stats = self.stats()
                logger.info("netmon stopped: %d frames, %d parsed, %d malformed, %d findings, %d facts published; "
                            "kernel drops %s", stats["received"], stats["parsed"], stats["malformed"],
                            stats["findings"], stats["published"],
                            {n: s["kernel_dropped"] for n, s in stats["sources"].items() if "kernel_dropped" in s})
            self.producer.stop()


def _wrong_link(interface: str, want: int) -> str:
    if want == DLT_IEEE802_11_RADIO:
        return (f"{interface!r} is not a monitor-mode radio (its frames have no radiotap header); put it in "
                f"monitor mode first (`iw dev {interface} set type monitor`, or a separate monitor interface)")
    return f"{interface!r} is a monitor-mode radio; set it as netmon.monitor_interface, not netmon.interface"


def run(settings: Settings, stop: threading.Event) -> None:
    """Entry point of `sitewarden run netmon`."""
    NetmonService(settings).run(stop)


def _demo_settings(data_dir: Path) -> dict[str, Any]:
    from netmon.demo import demo_settings

    return demo_settings(data_dir)


SERVICE = ServiceSpec(
    name=SERVICE_NAME,
    summary="passive network monitoring: rogue and look-alike access points, deauth floods, unknown stations, "
            "ARP spoofing, rogue DHCP, VPN bypass and personal VPNs",
    run=run,
    demo_settings=_demo_settings,
)
