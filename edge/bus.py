"""The one MQTT client every service uses: paho v2, reconnect with backoff, retained availability, QoS 1."""

from __future__ import annotations

import logging
import queue
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import BrokerSettings, read_secret
from edge.topics import status_topic

logger = logging.getLogger(__name__)

ONLINE = b"online"
OFFLINE = b"offline"
RECONNECT_MIN_DELAY_S = 1


WAKE = object()
"""Put on a `wake` queue when a bus with its own inbox has something: the owner may be waiting elsewhere."""


@dataclass(frozen=True)
class Inbound:
    """A message received on a subscription, to be handled off paho's thread and then acked."""

    bus: Bus
    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    link: int = 0  # which connection it came on: a message id means nothing on the next one


@dataclass(frozen=True)
class LinkChanged:
    """The bus connected (`up`) or lost its broker."""

    bus: Bus
    up: bool


class Bus:
    """A paho-mqtt client that reconnects by itself and never runs our work on paho's thread.

    paho runs callbacks while holding its own lock, so a callback that publishes or waits can deadlock
    the client: every callback here only puts an item on a queue. Received messages land on `inbox` as
    `Inbound` (and link changes as `LinkChanged`), each followed by a `WAKE` on `wake` if given; broker
    acknowledgements of our publishes land on `published` as message ids. With `manual_ack` the broker's
    copy of a message is released only when the owner calls `ack()`, after it stored what the message said.

    `max_in_flight=0` lifts paho's own window, for owners that bound what they hand over themselves (the
    durable publisher, the forwarder): with a window paho walks every outstanding message on each PUBACK,
    which at a thousand outstanding costs more than the rest of the message's trip through paho.
    """

    def __init__(
        self,
        broker: BrokerSettings,
        *,
        client_id: str,
        site: str,
        service: str | None,
        inbox: queue.SimpleQueue[Any] | None = None,
        clean_session: bool = True,
        manual_ack: bool = False,
        max_in_flight: int = 1000,
        wake: queue.SimpleQueue[Any] | None = None,
    ) -> None:
        self.broker = broker
        self.client_id = client_id
        self.inbox: queue.SimpleQueue[Any] = inbox if inbox is not None else queue.SimpleQueue()
        self.published: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._wake = wake
        self.connected = threading.Event()
        self._subscriptions: dict[str, int] = {}
        self._availability = status_topic(site, service) if service else None
        self._was_connected = False
        self._stopping = False
        self._link = 0
        self._last_refusal: str | None = None
        self._unreachable_logged = False
        self._lock = threading.Lock()

        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=mqtt.MQTTv311,
            manual_ack=manual_ack,
        )
        client.max_inflight_messages_set(max_in_flight)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(RECONNECT_MIN_DELAY_S, broker.reconnect_max_delay_s)
        if broker.username:
            password = read_secret(broker.password_file) if broker.password_file else None
            client.username_pw_set(broker.username, password)
        if broker.tls is not None:
            tls = broker.tls
            client.tls_set(
                ca_certs=str(tls.ca_file) if tls.ca_file else None,
                certfile=str(tls.cert_file) if tls.cert_file else None,
                keyfile=str(tls.key_file) if tls.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            client.tls_insecure_set(tls.insecure_skip_verify)
        if self._availability:
            client.will_set(self._availability, OFFLINE, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_socket_open = self._on_socket_open
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        self.client = client

    @property
    def where(self) -> str:
        """host:port, for log lines."""
        return f"{self.broker.host}:{self.broker.port}"

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribe now if connected, and again after every reconnect."""
        with self._lock:
            self._subscriptions[topic_filter] = qos
        if self.connected.is_set():
            self.client.subscribe(topic_filter, qos)

    def start(self) -> None:
        """Connect in the background; paho keeps retrying with backoff until stop()."""
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=self.broker.keepalive_s)
        self.client.loop_start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Say `offline` ourselves (a clean stop sends no will), then disconnect."""
        self._stopping = True
        if self._availability and self.connected.is_set():
            info = self.client.publish(self._availability, OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> mqtt.MQTTMessageInfo:
        """Publish; with QoS 1 paho holds the message until the broker acks it, across reconnects."""
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def ack(self, message: Inbound) -> None:
        """Release a received QoS 1 message at the broker (only meaningful with manual_ack).

        A message from an earlier connection is not acked: after a reconnect its id may name another
        message, which would then be released before it was stored. The broker sends the old one again.
        """
        if message.qos > 0 and message.link == self._link:
            self.client.ack(message.mid, message.qos)

    # paho callbacks: hand over and return, nothing else.

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        if reason_code.is_failure:
            text = str(reason_code)
            if text != self._last_refusal:
                logger.error("broker %s refused connection as %s: %s", self.where, self.client_id, text)
                self._last_refusal = text
            return
        self._last_refusal = None
        self._unreachable_logged = False
        if self._was_connected:
            logger.info("reconnected to broker %s", self.where)
        else:
            logger.info("connected to broker %s as %s", self.where, self.client_id)
        self._was_connected = True
        self._link += 1
        with self._lock:
            subscriptions = list(self._subscriptions.items())
        if subscriptions:
            client.subscribe(subscriptions)
        if self._availability:
            client.publish(self._availability, ONLINE, qos=1, retain=True)
        self.connected.set()
        self.inbox.put(LinkChanged(self, True))
        if self._wake is not None:
            self._wake.put(WAKE)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        if self.connected.is_set() and not self._stopping:
            logger.warning("lost broker %s (%s); reconnecting with backoff", self.where, reason_code)
            self.connected.clear()
            self.inbox.put(LinkChanged(self, False))

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        # Small QoS 1 messages and their acks would otherwise wait ~40 ms each for Nagle's algorithm.
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            logger.debug("cannot set TCP_NODELAY on %r", sock)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        if not self._unreachable_logged:
            logger.warning("cannot reach broker %s as %s; retrying with backoff (up to %g s apart)", self.where,
                           self.client_id, self.broker.reconnect_max_delay_s)
            self._unreachable_logged = True

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.inbox.put(Inbound(self, message.topic, message.payload, message.qos, bool(message.retain),
                               message.mid, self._link))
        if self._wake is not None:
            self._wake.put(WAKE)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any,
                    properties: Any) -> None:
        self.published.put(mid)
