"""Access decisions, schedules and the cardholder list: CSV in and out, bad rows named, nothing half-imported."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from edge.cli import cli
from firmware_bridge.access import Cardholder, decide, parse_schedule
from firmware_bridge.cardholders import CardholderError, parse_csv, to_csv

MONDAY_9 = datetime(2026, 11, 16, 9, 0)
SATURDAY_14 = datetime(2026, 11, 21, 14, 0)


def test_schedules_parse_and_hold() -> None:
    windows = parse_schedule("mon-fri 07:00-19:00; sat 09:00-13:00")
    assert windows is not None
    assert any(w.contains(MONDAY_9) for w in windows)
    assert not any(w.contains(SATURDAY_14) for w in windows)
    assert parse_schedule("always") is None
    assert parse_schedule("fri-mon 00:00-24:00")[0].days == frozenset({4, 5, 6, 0})  # type: ignore[index]


@pytest.mark.parametrize("spec", ["weekdays", "mon 9-17", "mon 18:00-07:00", "xyz 07:00-08:00", "mon 25:00-26:00"])
def test_bad_schedules_say_why(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_schedule(spec)


def test_decisions_and_their_reasons() -> None:
    base = Cardholder(id="a", credential="1:2", doors=("front",), schedule="mon-fri 07:00-19:00",
                      valid_from=date(2026, 1, 1), valid_until=date(2026, 12, 31))
    assert decide(base, "front", MONDAY_9).granted
    assert decide(None, "front", MONDAY_9).reason == "unknown_card"
    assert decide(base, "lab", MONDAY_9).reason == "wrong_door"
    assert decide(base, "front", SATURDAY_14).reason == "outside_schedule"
    assert decide(base.model_copy(update={"enabled": False}), "front", MONDAY_9).reason == "disabled"
    assert decide(base, "front", datetime(2027, 1, 4, 9)).reason == "expired"
    assert decide(base, "front", datetime(2025, 12, 1, 9)).reason == "not_yet_valid"


def test_csv_round_trip_and_leading_zeros_are_the_same_card() -> None:
    text = ("id,name,credential,doors,schedule,valid_until\n"
            "e1,Ann,012:00345,front;lab,mon-fri 07:00-19:00,2027-01-31\n"
            "e2,Ben,ABC-9,*,always,\n")
    holders = parse_csv(text)
    assert holders[0].credential == "12:345" and holders[0].doors == ("front", "lab")
    assert parse_csv(to_csv(holders)) == holders


def test_every_bad_csv_row_is_named() -> None:
    text = "id,credential,schedule,valid_until\na,1:1,always,\nb,1:1,always,\nc,1:3,sometimes,\nd,1:4,always,soon\n"
    with pytest.raises(CardholderError) as err:
        parse_csv(text)
    problems = "\n".join(err.value.problems)
    assert "CSV line 2: credential repeats CSV line 1" in problems
    assert "CSV line 3: schedule" in problems
    assert "CSV line 4: valid_until" in problems


def test_cli_import_export_and_a_failed_import_changes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"site": {"id": "s"}, "data_dir": str(tmp_path / "data")}))
    good = tmp_path / "staff.csv"
    good.write_text("id,name,credential\ne1,Ann,12:345\ne2,Ben,12:346\n")
    runner = CliRunner()
    result = runner.invoke(cli, ["--config", str(config), "badge", "cardholders", "import", str(good)], obj={})
    assert result.exit_code == 0, result.output
    assert "imported 2 cardholders" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("id,name,credential\ne3,Cas,12:347\ne4,Dee,\n")
    result = runner.invoke(cli, ["--config", str(config), "badge", "cardholders", "import", "--replace", str(bad)],
                           obj={})
    assert result.exit_code == 1
    assert "CSV line 2: credential" in result.output and "nothing imported" in result.output
    result = runner.invoke(cli, ["--config", str(config), "badge", "cardholders", "export"], obj={})
    assert result.exit_code == 0
    assert [line.split(",")[0] for line in result.output.splitlines()] == ["id", "e1", "e2"]
