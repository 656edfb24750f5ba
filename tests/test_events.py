"""Events, topics and ids: the wire format every service shares."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge import topics
from edge.events import DoorOpened, PayloadError, UnknownKind, dump_event, parse_fact
from edge.ids import new_id

ROOT = Path(__file__).resolve().parent.parent


def test_fact_round_trips_through_the_union() -> None:
    fact = DoorOpened(site="s1", source="badge/ctl-1", door="front")
    parsed = parse_fact(dump_event(fact))
    assert parsed == fact
    assert isinstance(parsed, DoorOpened)
    assert parsed.service == "badge" and parsed.device == "ctl-1"


def test_facts_are_frozen() -> None:
    fact = DoorOpened(site="s1", source="badge/ctl-1", door="front")
    with pytest.raises(ValidationError):
        fact.door = "back"  # type: ignore[misc]


def test_occurred_at_is_normalised_to_utc_and_naive_times_are_refused() -> None:
    local = datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=1)))
    fact = DoorOpened(site="s1", source="badge/ctl-1", door="front", occurred_at=local)
    assert fact.occurred_at == datetime(2026, 1, 1, 11, 0, tzinfo=UTC)
    assert fact.occurred_at.utcoffset() == timedelta(0)
    with pytest.raises(ValidationError):
        DoorOpened(site="s1", source="badge/ctl-1", door="front", occurred_at=datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not_json"),
        (b"\xff\xfe\x00garbage", "not_utf8"),
        (b"[1, 2]", "not_object"),
        (b'{"kind": "door_opened", "site": "s1"}', "bad_schema"),
        (b"{" + b" " * (1024 * 1024) + b"}", "too_large"),
    ],
)
def test_bad_payloads_raise_a_labelled_error(payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_fact(payload)
    assert caught.value.reason == reason


def test_unknown_kind_is_its_own_error() -> None:
    with pytest.raises(UnknownKind):
        parse_fact(json.dumps({"kind": "teleported", "site": "s1"}).encode())


def test_ids_are_unique_and_sort_in_creation_order() -> None:
    ids = [new_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def test_topics_are_built_and_parsed_in_one_place() -> None:
    fact = topics.fact_topic("s1", "badge", "ctl-1", "door_opened")
    assert fact == "sitewarden/s1/badge/ctl-1/door_opened"
    parsed = topics.parse_topic(fact)
    assert parsed == topics.Topic("fact", "s1", service="badge", device="ctl-1", name="door_opened")
    assert topics.parse_topic(topics.alert_topic("s1", "door_forced_open")) == topics.Topic(
        "alert", "s1", name="door_forced_open")
    assert topics.parse_topic(topics.status_topic("s1", "vision")).kind == "status"
    assert topics.parse_topic(topics.stats_topic("s1", "vision")).kind == "stats"
    assert topics.parse_topic(topics.console_ack_topic("s1")).kind == "console_ack"
    assert topics.parse_topic(topics.console_alerts_topic("s1")) == topics.Topic("console_alerts", "s1")
    assert topics.parse_topic(topics.command_topic("s1", "edge", "alert_ack")).kind == "command"
    assert topics.parse_topic("homeassistant/sensor/x") is None
    with pytest.raises(ValueError):
        topics.fact_topic("s1", "alert", "x", "door_opened")  # reserved segment
    with pytest.raises(ValueError):
        topics.fact_topic("s1", "badge", "has/slash", "door_opened")


def test_schemas_in_docs_match_the_code() -> None:
    """docs/schemas is what integrators read; it must never drift from the models."""
    done = subprocess.run([sys.executable, "-m", "edge.cli", "schema", "--check", str(ROOT / "docs" / "schemas")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_schema_check_fails_when_a_schema_is_stale(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "edge.cli", "schema"]
    subprocess.run([*cli, "--out", str(tmp_path)], check=True, capture_output=True)
    stale = tmp_path / "door_opened.json"
    stale.write_text(stale.read_text().replace('"door"', '"gate"'))
    done = subprocess.run([*cli, "--check", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 1
    assert "stale: door_opened.json" in done.stderr
