"""Events, topics and ids: the wire format every service shares."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from edge import topics
from edge.events import FACT_KINDS, DoorOpened, PayloadError, UnknownKind, dump_event, parse_fact
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


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
FACT_SCHEMAS = {kind: json.loads((ROOT / "docs" / "schemas" / f"{kind}.json").read_text()) for kind in FACT_KINDS}


def _from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid by one of our published fact schemas (only the JSON Schema features they use)."""
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([_from_schema(option) for option in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "string" and schema.get("format") == "date-time":
        return st.datetimes(timezones=st.timezones()).map(datetime.isoformat)
    if kind == "string":
        return st.from_regex(schema["pattern"], fullmatch=True) if "pattern" in schema else st.text(max_size=20)
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", -1e9) + 1)
        return st.integers(int(low), 10**6) if kind == "integer" else st.floats(low, 1e6)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(_from_schema(schema["items"]), min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 3), 3))
    raise AssertionError(f"schema feature not covered here: {schema}")


@st.composite
def fact_shaped_objects(draw: st.DrawFn) -> dict[str, Any]:
    """A fact valid by its published JSON schema, then (mostly) broken: a field replaced by any JSON value, a
    field dropped, or an unknown one added. `kind` itself is among the fields that may be replaced."""
    kind = draw(st.sampled_from(sorted(FACT_KINDS)))
    schema = FACT_SCHEMAS[kind]
    data = {name: draw(_from_schema(prop)) for name, prop in schema["properties"].items()
            if name in schema.get("required", ()) or draw(st.booleans())}
    for _ in range(draw(st.integers(0, 3))):
        field = draw(st.sampled_from([*sorted(FACT_SCHEMAS[kind]["properties"]), "extra"]))
        action = draw(st.sampled_from(["replace", "drop"]))
        if action == "drop":
            data.pop(field, None)
        else:
            data[field] = draw(JSON_VALUES)
    return data


@given(kind=JSON_VALUES.filter(lambda v: not isinstance(v, str)), rest=st.dictionaries(st.text(max_size=8),
                                                                                     JSON_VALUES, max_size=4))
def test_a_kind_that_is_not_a_string_is_bad_schema(kind: Any, rest: dict[str, Any]) -> None:
    """A list or object as `kind` raised `TypeError: unhashable type` (counted as a handler error with a
    traceback); a number, null or bool was called an unknown kind. All are a broken schema."""
    with pytest.raises(PayloadError) as caught:
        parse_fact(json.dumps({**rest, "kind": kind}).encode())
    assert caught.value.reason == "bad_schema"


def test_a_fact_without_a_kind_is_bad_schema() -> None:
    with pytest.raises(PayloadError) as caught:
        parse_fact(json.dumps({"site": "s1", "source": "badge/ctl-1", "door": "front"}).encode())
    assert caught.value.reason == "bad_schema"


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(data=fact_shaped_objects())
def test_any_fact_shaped_json_parses_to_a_sendable_fact_or_is_labelled(data: dict[str, Any]) -> None:
    """Nothing but a fact (that can be stored and sent again) or a PayloadError comes out of parse_fact."""
    try:
        fact = parse_fact(json.dumps(data).encode())
    except PayloadError as err:
        assert err.reason in ("bad_schema", "unknown_kind"), err
        return
    assert parse_fact(dump_event(fact)) == fact
    fact.occurred_at.timestamp()  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", ["\ud800", "ok \udfff", {"\udc00": 1}, ["x", "\ud83d"]])
def test_lone_surrogates_are_bad_schema_not_a_later_crash(value: Any) -> None:
    """json reads `"\\ud800"` into a string no UTF-8 encoder takes: storing or re-sending it would fail later."""
    data = {"kind": "access_granted", "site": "s1", "source": "badge/ctl-1", "door": "front", "credential": value}
    with pytest.raises(PayloadError) as caught:
        parse_fact(json.dumps(data).encode())
    assert caught.value.reason == "bad_schema"


def test_a_time_with_no_utc_equivalent_is_bad_schema() -> None:
    """0001-01-01T00:00+01:00 is before the first UTC time Python has: OverflowError, not a ValueError."""
    data = {"kind": "door_opened", "site": "s1", "source": "badge/ctl-1", "door": "front",
            "occurred_at": "0001-01-01T00:00:00+01:00"}
    with pytest.raises(PayloadError) as caught:
        parse_fact(json.dumps(data).encode())
    assert caught.value.reason == "bad_schema"
