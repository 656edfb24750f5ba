"""Alert messages travel to the console in batches: stored once each, confirmed by id, never lost with a batch."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from conftest import SITE, query, wait_until, write_config

from edge import topics
from edge.alerts import Alert, AlertBatch, AlertMessage, Severity
from edge.events import DoorOpened, dump_event, utcnow

SOURCE = "badge/controller-1"


def _message(n: int, site: str = SITE, seq: int | None = None) -> AlertMessage:
    now = utcnow()
    alert = Alert(alert_id=f"alert-{n}", site=site, kind="door_forced_open", severity=Severity.HIGH,
                  title=f"Door d{n} forced open", door=f"d{n}", dedupe_key=f"door_forced_open:d{n}",
                  raised_at=now, last_seen_at=now)
    return AlertMessage(message_id=f"message-{n}", seq=n if seq is None else seq, type="new", alert=alert)


def _batch(*messages: AlertMessage) -> bytes:
    return AlertBatch(site=SITE, messages=messages).model_dump_json().encode()


def _confirmed(site_client) -> list[list[str]]:
    return [ack["message_ids"] for ack in site_client.payloads(topics.console_ack_topic(SITE))]


def test_console_stores_a_resent_batch_once_and_confirms_every_id(tmp_path: Path, central_broker, service_factory,
                                                                  client_factory) -> None:
    """A site sends a batch again when a confirmation was lost, or cuts it differently after a restart."""
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", central_broker.port, central_broker.port)
    service_factory(config, "console")
    site = client_factory(central_broker.port)
    site.subscribe(topics.console_ack_topic(SITE))
    messages = {n: _message(n) for n in (1, 2, 3, 4)}
    first = [messages[1], messages[2], messages[3]]
    site.publish(topics.console_alerts_topic(SITE), _batch(*first))
    wait_until(lambda: len(_confirmed(site)) == 1, 10, "the first confirmation")
    site.publish(topics.console_alerts_topic(SITE), _batch(*first))
    site.publish(topics.console_alerts_topic(SITE), _batch(messages[3], messages[4]))
    wait_until(lambda: sum(len(ids) for ids in _confirmed(site)) == 3 + 3 + 2, 10, "every confirmation")

    confirmed = [id_ for ids in _confirmed(site) for id_ in ids]
    assert sorted(confirmed) == sorted(["message-1", "message-2", "message-3"] * 2 + ["message-3", "message-4"])
    console_db = tmp_path / "data" / "console.db"
    assert query(console_db, "SELECT message_id FROM alert_messages ORDER BY seq") == [
        ("message-1",), ("message-2",), ("message-3",), ("message-4",)]
    assert query(console_db, "SELECT count(*) FROM alerts") == [(4,)]
    stored = query(console_db, "SELECT payload FROM alerts WHERE alert_id = 'alert-4'")[0][0]
    assert Alert.model_validate_json(stored) == messages[4].alert


def test_console_keeps_the_good_messages_of_a_batch_with_bad_ones(tmp_path: Path, central_broker, service_factory,
                                                                  client_factory) -> None:
    """One unreadable or unstorable message must neither sink its batch nor come back forever."""
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", central_broker.port, central_broker.port)
    console = service_factory(config, "console")
    console_db = tmp_path / "data" / "console.db"
    # A message the database refuses (as a disk-level constraint would): only it may be rolled back.
    conn = sqlite3.connect(console_db)
    conn.execute("CREATE TRIGGER refuse_poison BEFORE INSERT ON alert_messages WHEN NEW.alert_id = 'alert-9' "
                 "BEGIN SELECT RAISE(ABORT, 'poison'); END")
    conn.commit()
    conn.close()
    site = client_factory(central_broker.port)
    site.subscribe(topics.console_ack_topic(SITE))
    good = [json.loads(_message(n).model_dump_json()) for n in (1, 2)]
    from_the_future = {"message_id": "message-5", "v": 2, "seq": 5, "type": "new", "alert": {"kind": "teleport"}}
    huge_seq = json.loads(_message(6).model_dump_json()) | {"seq": 2**70}
    other_site = json.loads(_message(7, site="another-site").model_dump_json())
    anonymous = {"seq": 8}
    payload = json.dumps({"v": 1, "site": SITE, "messages": [good[0], from_the_future, huge_seq, other_site,
                                                              anonymous, good[1]]}).encode()
    site.publish(topics.console_alerts_topic(SITE), payload)
    wait_until(lambda: len(_confirmed(site)) == 1, 10, "the first confirmation")
    site.publish(topics.console_alerts_topic(SITE), _batch(_message(3), _message(9), _message(10)))
    wait_until(lambda: len(_confirmed(site)) == 2, 10, "the second confirmation")

    assert _confirmed(site) == [["message-1", "message-2", "message-5", "message-6", "message-7"],
                                ["message-3", "message-9", "message-10"]]
    assert query(console_db, "SELECT message_id FROM alert_messages ORDER BY seq") == [
        ("message-1",), ("message-2",), ("message-3",), ("message-10",)]
    assert query(console_db, "SELECT message_id, reason FROM rejected_messages ORDER BY message_id") == [
        ("message-5", "unreadable"), ("message-6", "unreadable"), ("message-7", "unreadable"),
        ("message-9", "unstorable")]
    assert console.proc is not None and console.proc.poll() is None


def test_part_of_a_batch_confirmed_leaves_only_the_rest_to_send_again(tmp_path: Path, mqtt_broker, central_broker,
                                                                      service_factory, client_factory) -> None:
    """The edge confirms by message id, not by batch: what the console confirmed is never sent again."""
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", mqtt_broker.port, central_broker.port,
                          rules={"max_open_s": 86400}, forwarder={"ack_timeout_s": 3})
    console = client_factory(central_broker.port)  # plays the console: confirms what this test says
    console.subscribe(topics.console_alerts_filter(SITE))
    service_factory(config, "edge")
    device = client_factory(mqtt_broker.port)
    fact_topic = topics.fact_topic(SITE, "badge", "controller-1", "door_opened")
    for n in range(6):
        device.publish(fact_topic, dump_event(DoorOpened(site=SITE, source=SOURCE, door=f"d{n}")), wait=False)

    def sent() -> list[str]:
        return [m["message_id"] for batch in console.payloads() for m in batch["messages"]]

    wait_until(lambda: len(set(sent())) == 6, 10, "six alert messages at the console's broker")
    first = sent()[:6]
    assert all(batch["site"] == SITE for batch in console.payloads())
    confirmed, left = first[0::2], first[1::2]
    console.publish(topics.console_ack_topic(SITE), json.dumps({"message_ids": confirmed}).encode())
    edge_db = tmp_path / "data" / "edge.db"
    wait_until(lambda: query(edge_db, "SELECT count(*) FROM outbox") == [(3,)], 10, "three rows left in the outbox")
    seen = len(console.payloads())
    resent = wait_until(lambda: [m["message_id"] for batch in console.payloads()[seen:] for m in batch["messages"]],
                        20, "the unconfirmed messages sent again")
    assert set(resent) <= set(left), f"confirmed messages were sent again: {set(resent) - set(left)}"
    console.publish(topics.console_ack_topic(SITE), json.dumps({"message_ids": left}).encode())
    wait_until(lambda: query(edge_db, "SELECT count(*) FROM outbox") == [(0,)], 10, "an empty outbox")


def test_edge_killed_between_batch_and_confirmation_loses_nothing(tmp_path: Path, mqtt_broker, central_broker,
                                                                  service_factory, client_factory) -> None:
    """kill -9 after batches went out and before their confirmation: the restarted edge sends them again."""
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", mqtt_broker.port, central_broker.port,
                          rules={"max_open_s": 86400})
    stand_in = client_factory(central_broker.port)  # sees the batches; the console is not running yet
    stand_in.subscribe(topics.console_alerts_filter(SITE))
    edge = service_factory(config, "edge")
    device = client_factory(mqtt_broker.port)
    fact_topic = topics.fact_topic(SITE, "badge", "controller-1", "door_opened")
    expected = 500
    for n in range(expected):
        device.publish(fact_topic, dump_event(DoorOpened(site=SITE, source=SOURCE, door=f"d{n}")), wait=False)
    wait_until(lambda: sum(len(b["messages"]) for b in stand_in.payloads()) >= expected, 30,
               f"{expected} alert messages sent in batches")
    assert len(stand_in.payloads()) < expected, "alert messages were not batched"
    edge.kill()
    edge_db = tmp_path / "data" / "edge.db"
    assert query(edge_db, "SELECT count(*) FROM outbox") == [(expected,)]

    service_factory(config, "console")
    edge.start()
    console_db = tmp_path / "data" / "console.db"
    wait_until(lambda: query(edge_db, "SELECT count(*) FROM outbox") == [(0,)]
               and query(console_db, "SELECT count(*) FROM alerts") == [(expected,)], 30,
               f"{expected} alerts at the console and an empty outbox")
    assert query(console_db, "SELECT count(*) FROM alert_messages") == [(expected,)]
    doors = {row[0] for row in query(console_db, "SELECT json_extract(payload, '$.door') FROM alerts")}
    assert doors == {f"d{n}" for n in range(expected)}
