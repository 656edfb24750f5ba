"""`sitewarden run badge`: door controllers and OSDP readers in, local access decisions, facts out, locks driven."""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from edge import topics
from edge.bus import Inbound, LinkChanged
from edge.config import ControllerSettings, DoorWiring, OsdpReaderSettings, Settings
from edge.events import (
    AccessDenied,
    AccessGranted,
    BadgeSwiped,
    DeviceCameOnline,
    DeviceWentOffline,
    DoorClosed,
    DoorOpened,
    Event,
    ExitRequested,
    KeypadEntered,
    PowerFailed,
    PowerRestored,
    TamperCleared,
    TamperDetected,
)
from edge.producer import FactProducer
from edge.rejects import RejectLog
from edge.services import ServiceSpec
from edge.store import database_path, open_database
from firmware_bridge import cardholders, door_states
from firmware_bridge.access import decide
from firmware_bridge.cardholders import CardholderError, CardholderStore
from firmware_bridge.commands import badge as badge_commands
from firmware_bridge.door_states import DoorStates
from firmware_bridge.link import CommandResult
from firmware_bridge.osdp_bus import (
    CardPresented,
    InputsReported,
    KeysPressed,
    LocalStatus,
    OsdpBus,
    OsdpEvent,
    ReaderSpec,
    ReaderStatus,
    load_key,
)
from firmware_bridge.osdp_channel import SerialChannel
from firmware_bridge.protocol import Buzzer, Frame, InputChanged, InputKind, Led, LedColor, Unlock, WiegandRead
from firmware_bridge.serial_link import LinkDown, LinkEvent, LinkUp, SerialLink
from firmware_bridge.wiegand import BadRead, CardRead, WiegandBits, decode, mask_credential, resolve_formats

logger = logging.getLogger(__name__)

SERVICE_NAME = "badge"
CARDHOLDERS = "cardholders"


@dataclass(frozen=True)
class _FromController:
    controller: str
    event: LinkEvent


@dataclass(frozen=True)
class _FromOsdp:
    bus: str
    event: OsdpEvent


def _door_for(controller: ControllerSettings, attr: str, index: int) -> tuple[str, DoorWiring] | None:
    for door, wiring in controller.doors.items():
        if getattr(wiring, attr) == index:
            return door, wiring
    return None


def _describe(item: Any) -> str:
    """An inbox item for a log line: where it came from and what it is, never card data or cardholder lists."""
    if isinstance(item, _FromController):
        event = item.event
        if isinstance(event, WiegandRead):
            return f"controller {item.controller}: a {event.bit_count}-bit read on reader port {event.reader}"
        return f"controller {item.controller}: {event!r:.200}"
    if isinstance(item, _FromOsdp):
        event = item.event
        if isinstance(event, CardPresented):
            return f"OSDP {item.bus}/{event.reader}: card data"
        return f"OSDP {item.bus}: {event!r:.200}"
    if isinstance(item, Inbound):
        return f"a {len(item.payload)}-byte message on {item.topic}"
    return type(item).__name__


class BadgeService:
    """Owns the readers and doors of one box. One thread makes every decision, in arrival order."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.site = settings.site.id
        self.tz = ZoneInfo(settings.site.timezone)
        self.inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.producer = FactProducer(settings, SERVICE_NAME, inbox=self.inbox)
        self.cardholder_db = open_database(database_path(settings.data_dir, SERVICE_NAME),
                                           (*cardholders.MIGRATIONS, *door_states.MIGRATIONS))
        self.cardholders = CardholderStore(self.cardholder_db)
        self.door_states = DoorStates(self.cardholder_db)
        self._doors_reported: set[str] = set()
        self.rejects = RejectLog("badge")
        self.counters: dict[str, int] = {"granted": 0, "denied": 0, "unlock_failed": 0, "cardholder_updates": 0}
        self._input_state: dict[tuple[str, int, int], int] = {}
        self.links: dict[str, SerialLink] = {}
        for cid, controller in settings.badge.controllers.items():
            self.links[cid] = SerialLink(
                controller.port, lambda ev, cid=cid: self.inbox.put(_FromController(cid, ev)),
                baudrate=controller.baudrate, silence_timeout_s=controller.silence_timeout_s, name=cid)
        self.buses: dict[str, OsdpBus] = {}
        self._osdp_readers: dict[tuple[str, str], OsdpReaderSettings] = {}
        for bus_id, bus in settings.badge.osdp.items():
            specs = []
            for reader_id, reader in bus.readers.items():
                specs.append(ReaderSpec(reader_id, reader.address, load_key(reader.key_file)))
                self._osdp_readers[(bus_id, reader_id)] = reader
            self.buses[bus_id] = OsdpBus(
                bus_id, SerialChannel(bus.port, bus.baudrate), specs,
                lambda ev, bus_id=bus_id: self.inbox.put(_FromOsdp(bus_id, ev)),
                recover_min_s=bus.recover_min_s, recover_max_s=bus.recover_max_s)
        self.producer.bus.subscribe(topics.config_topic(self.site, SERVICE_NAME, CARDHOLDERS))

    # -- running -------------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        logger.info("badge service: %d controllers, %d OSDP buses, %d cardholders", len(self.links),
                    len(self.buses), len(self.cardholders))
        self.producer.start()
        for link in self.links.values():
            link.start()
        for bus in self.buses.values():
            bus.start()
        try:
            while not stop.is_set():
                try:
                    item = self.inbox.get(timeout=0.2)
                except queue.Empty:
                    continue
                self.handle(item)
        finally:
            for link in self.links.values():
                link.stop()
            for bus in self.buses.values():
                bus.stop()
            try:
                self.producer.stop()
            except sqlite3.Error as err:  # the failure that stopped us, met again: the original error stands
                logger.error("badge: the facts store failed again while stopping: %s", err)
                self.producer.bus.stop()
            self.cardholder_db.conn.close()

    def handle(self, item: Any) -> None:
        """One event in; a bad one is counted and logged once, and the next one is handled as usual.

        Except a failure of the database itself (disk full, I/O error, read-only, locked too long): that is not
        the event's fault, and swallowing it would lose the fact it was storing. It propagates: the service
        stops (systemd starts it again) and says which event's facts were not stored.
        """
        try:
            if isinstance(item, _FromController):
                self._controller_event(item.controller, item.event)
            elif isinstance(item, _FromOsdp):
                self._osdp_event(item.bus, item.event)
            elif isinstance(item, Inbound):
                self._config_message(item)
            elif isinstance(item, LinkChanged):
                pass
        except sqlite3.OperationalError as err:
            logger.critical("badge database failed (%s) while handling %s: its facts are NOT stored; stopping",
                            err, _describe(item))
            raise
        except Exception as err:  # one bad event must not stop the doors
            self.rejects.reject(type(item).__name__, type(err).__name__, f"{_describe(item)}: {err}", error=err)

    def _publish(self, *facts: Event) -> None:
        self.producer.publish(*facts)

    def _source(self, device: str) -> str:
        return f"{SERVICE_NAME}/{device}"

    # -- Wiegand controllers --------------------------------------------------------------------------------
    def _controller_event(self, cid: str, event: LinkEvent) -> None:
        controller = self.settings.badge.controllers[cid]
        device_id = self._source(cid)
        if isinstance(event, WiegandRead):
            found = _door_for(controller, "reader", event.reader)
            if found is None:
                self.rejects.reject(f"controller {cid}", "unwired_reader", f"read on reader port {event.reader}")
                return
            door, wiring = found
            bits = WiegandBits.from_bytes(event.bit_count, event.data)
            self._swipe(door, f"{cid}/{event.reader}", device_id, bits, None, wiring.formats,
                        lambda granted: self._controller_feedback(cid, wiring, granted))
        elif isinstance(event, InputChanged):
            self._input(cid, controller, event)
        elif isinstance(event, CommandResult):
            self._command_result(cid, event)
        elif isinstance(event, LinkUp):
            self._publish(DeviceCameOnline(site=self.site, source=device_id, device_id=device_id,
                                           device_type="controller"))
        elif isinstance(event, LinkDown):
            self._publish(DeviceWentOffline(site=self.site, source=device_id, device_id=device_id,
                                            device_type="controller", reason=event.reason))

    def _controller_feedback(self, cid: str, wiring: DoorWiring, granted: bool) -> None:
        link = self.links[cid]
        led_ms = self.settings.badge.grant_feedback_ms
        if granted:
            link.send(Unlock(0, wiring.relay, wiring.unlock_ms))
            link.send(Led(0, wiring.reader, LedColor.GREEN, led_ms))
            link.send(Buzzer(0, wiring.reader, 100, 1))
        else:
            link.send(Led(0, wiring.reader, LedColor.RED, led_ms))
            link.send(Buzzer(0, wiring.reader, 100, 3))

    def _command_result(self, cid: str, result: CommandResult) -> None:
        if result.ok:
            return
        command: Frame = result.command
        if isinstance(command, Unlock):
            self.counters["unlock_failed"] += 1
            logger.error("controller %s: unlock of relay %d NOT carried out: %s", cid, command.output, result.detail)
        else:
            logger.warning("controller %s: %s not carried out: %s", cid, type(command).__name__, result.detail)

    def _input(self, cid: str, controller: ControllerSettings, event: InputChanged) -> None:
        source = self._source(cid)
        active = bool(event.state)
        if event.kind == InputKind.DOOR_CONTACT:
            found = _door_for(controller, "contact", event.index)
            if found is not None:
                self._door_contact(found[0], source, active)
            return
        key = (cid, event.kind, event.index)
        known = self._input_state.get(key)
        self._input_state[key] = event.state
        if known == event.state:
            return  # the state report after a reconnect, unchanged
        if event.kind == InputKind.REQUEST_TO_EXIT:
            found = _door_for(controller, "rex", event.index)
            if found is not None and active:
                self._publish(ExitRequested(site=self.site, source=source, door=found[0]))
        elif event.kind in (InputKind.TAMPER, InputKind.POWER):
            doors = list(controller.doors)
            self._tamper_or_power(source, doors[0] if len(doors) == 1 else None, InputKind(event.kind), active,
                                  known)
        else:
            self.rejects.reject(f"controller {cid}", "unknown_input", f"input kind {event.kind} index {event.index}")

    def _door_contact(self, door: str, source: str, is_open: bool) -> None:
        """A contact report: a fact when it differs from what was last published for the door (see door_states)."""
        known = self.door_states.get(door)
        first = door not in self._doors_reported
        self._doors_reported.add(door)
        state = "open" if is_open else "closed"
        if known == is_open:
            if first:
                logger.info("door %s is %s, as last published", door, state)
            return  # unchanged: a repeated report, or the state report after a reconnect or restart
        if known is None and not is_open:
            logger.info("door %s is closed", door)
            self.door_states.remember(door, False)  # first sight of a closed door: nothing happened
            return
        if first:
            logger.info("door %s is %s, last published %s: publishing it %s", door, state,
                        "never" if known is None else "open" if known else "closed", state)
        fact_cls = DoorOpened if is_open else DoorClosed
        self._publish(fact_cls(site=self.site, source=source, door=door))
        self.door_states.remember(door, is_open)

    # -- decisions ----------------------------------------------------------------------------------------
    def _swipe(self, door: str, reader: str, source: str, bits: WiegandBits | None, text: str | None,
               formats: list[str], feedback: Any) -> None:
        if text is not None:
            credential, card_format, read = text, "ascii", None
            masked = mask_credential("ascii", text)
        else:
            assert bits is not None
            read = decode(bits, resolve_formats(formats))
            if isinstance(read, CardRead):
                credential, card_format, masked = read.credential, read.format, read.masked
            else:
                credential, card_format, masked = None, None, read.masked  # type: ignore[assignment]
        now = datetime.now(self.tz)
        if self.cardholders.refresh_if_changed():
            logger.info("cardholder list reloaded: %d cardholders", len(self.cardholders))
        if isinstance(read, BadRead):
            granted, reason, holder_id = False, read.reason, None
        else:
            decision = decide(self.cardholders.lookup(credential, card_format), door, now)  # type: ignore[arg-type]
            granted, reason, holder_id = decision.granted, decision.reason, decision.who
        feedback(granted)  # the lock first: the person is waiting at the door
        swiped = BadgeSwiped(site=self.site, source=source, door=door, reader=reader, credential=masked,
                             card_format=card_format,
                             read_error=read.reason if isinstance(read, BadRead) else None)
        if granted:
            self.counters["granted"] += 1
            outcome: Event = AccessGranted(site=self.site, source=source, door=door, credential=masked,
                                           cardholder=holder_id)
            logger.info("door %s: granted %s (%s)", door, masked, holder_id)
        else:
            self.counters["denied"] += 1
            outcome = AccessDenied(site=self.site, source=source, door=door, credential=masked,
                                   reason=reason or "unknown")
            logger.info("door %s: denied %s: %s", door, masked, reason)
        self._publish(swiped, outcome)

    # -- OSDP -------------------------------------------------------------------------------------------------
    def _osdp_event(self, bus_id: str, event: OsdpEvent) -> None:
        reader = self._osdp_readers[(bus_id, event.reader)]
        device_id = self._source(f"{bus_id}.{event.reader}")
        bus = self.buses[bus_id]
        if isinstance(event, CardPresented):
            def feedback(granted: bool) -> None:
                if not bus.feedback(reader.address, granted, reader.unlock_output, reader.unlock_ms,
                                    self.settings.badge.grant_feedback_ms):
                    logger.error("OSDP reader %s: feedback%s not sent (reader not online)", event.reader,
                                 " and unlock" if granted else "")

            self._swipe(reader.door, f"{bus_id}/{event.reader}", device_id, event.bits, event.text, reader.formats,
                        feedback)
        elif isinstance(event, KeysPressed):
            self._publish(KeypadEntered(site=self.site, source=device_id, door=reader.door,
                                        reader=f"{bus_id}/{event.reader}", keys=event.count))
        elif isinstance(event, ReaderStatus):
            if event.online:
                self._publish(DeviceCameOnline(site=self.site, source=device_id, device_id=device_id,
                                               device_type="reader"))
            else:
                self._publish(DeviceWentOffline(site=self.site, source=device_id, device_id=device_id,
                                                device_type="reader", reason=event.reason))
        elif isinstance(event, LocalStatus):
            self._osdp_local(device_id, reader.door, event)
        elif isinstance(event, InputsReported):
            self._osdp_inputs(f"{bus_id}/{event.reader}", device_id, reader, event.states)

    def _osdp_inputs(self, where: str, device_id: str, reader: OsdpReaderSettings, states: tuple[bool, ...]) -> None:
        """An input status report (the state of every input of the reader): door contact and request-to-exit."""
        for key, index in (("contact_input", reader.contact_input), ("rex_input", reader.rex_input)):
            if index is not None and index >= len(states):
                self.rejects.reject(f"OSDP reader {where}", "input_not_reported",
                                    f"{key} is {index} but the reader reports {len(states)} inputs")
        if reader.contact_input is not None and reader.contact_input < len(states):
            self._door_contact(reader.door, device_id, states[reader.contact_input])
        if reader.rex_input is not None and reader.rex_input < len(states):
            key = (device_id, int(InputKind.REQUEST_TO_EXIT), reader.rex_input)
            known = self._input_state.get(key)
            pressed = states[reader.rex_input]
            self._input_state[key] = int(pressed)
            if pressed and known != int(pressed):
                self._publish(ExitRequested(site=self.site, source=device_id, door=reader.door))

    def _osdp_local(self, device_id: str, door: str, event: LocalStatus) -> None:
        for kind, active in ((InputKind.TAMPER, event.tamper), (InputKind.POWER, event.power_failed)):
            key = (device_id, int(kind), 0)
            known = self._input_state.get(key)
            self._input_state[key] = int(active)
            if known != int(active):
                self._tamper_or_power(device_id, door, kind, active, known)

    def _tamper_or_power(self, device_id: str, door: str | None, kind: InputKind, active: bool,
                         known: int | None) -> None:
        """Publish a tamper or power change; the first report after a start only when it is the alarming one."""
        if known is None and not active:
            return
        if kind == InputKind.TAMPER:
            tamper = TamperDetected if active else TamperCleared
            self._publish(tamper(site=self.site, source=device_id, device_id=device_id, door=door))
        else:
            power = PowerFailed if active else PowerRestored
            self._publish(power(site=self.site, source=device_id, device_id=device_id))

    # -- cardholder updates over MQTT ------------------------------------------------------------------------
    def _config_message(self, item: Inbound) -> None:
        topic = topics.parse_topic(item.topic)
        if topic is None or topic.kind != "config" or topic.name != CARDHOLDERS:
            return
        if not item.payload:
            return  # retained message cleared: keep the list we have
        try:
            version, holders = cardholders.parse_json_list(item.payload)
        except CardholderError as err:
            self.rejects.reject(item.topic, "bad_cardholder_list", f"{len(err.problems)} problems, kept the current "
                                f"list of {len(self.cardholders)}: {err}", item.payload)
            return
        if version is not None and version == self.cardholders.version():
            return
        self.cardholders.replace_all(holders, source="mqtt", version=version)
        self.counters["cardholder_updates"] += 1
        logger.info("cardholder list replaced from %s: %d cardholders (version %s)", item.topic, len(holders),
                    version)


def run(settings: Settings, stop: threading.Event) -> None:
    """Entry point of `sitewarden run badge`."""
    BadgeService(settings).run(stop)


def _simulate(settings: Settings, stop: threading.Event) -> None:
    from firmware_bridge.demo import run_simulated_site

    run_simulated_site(settings, stop)


SERVICE = ServiceSpec(
    name=SERVICE_NAME,
    summary="badge readers (Wiegand controllers, OSDP), door I/O, local access decisions",
    run=run,
    simulate=_simulate,
    demo_settings=lambda data_dir: _demo_settings(data_dir),
    commands=badge_commands,
)


def _demo_settings(data_dir: Path) -> dict[str, Any]:
    from firmware_bridge.demo import demo_settings

    return demo_settings(data_dir)
