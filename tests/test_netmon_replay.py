"""`sitewarden netmon replay` judges a capture exactly as the netmon service does: the config's approved
stations, the learning period and the site's inventory (approved or already reported) all count."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from edge.cli import cli
from edge.config import load_settings
from netmon import scenarios
from netmon.engine import read_capture
from netmon.inventory import Inventory
from netmon.service import NetmonService


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> tuple[Path, Path]:
    return scenarios.write_captures(tmp_path_factory.mktemp("captures"))


def _config(tmp_path: Path, known_stations: list[str]) -> Path:
    netmon = {**scenarios.SETTINGS, "lan": {**scenarios.SETTINGS["lan"], "known_stations": known_stations}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"site": {"id": "t"}, "data_dir": str(tmp_path / "data"), "netmon": netmon}))
    return path


def _replay(config: Path, *paths: Path) -> list[tuple[str, str]]:
    """(kind, what) of each finding `sitewarden netmon replay --json` prints."""
    result = CliRunner().invoke(cli, ["--config", str(config), "netmon", "replay", "--json", *map(str, paths)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    found = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return sorted((f["kind"], f.get("mac") or f.get("bssid") or f["signature"]) for f in found)


def test_replay_does_not_report_a_station_listed_in_the_configs_known_stations(captures, tmp_path) -> None:
    config = _config(tmp_path, [*scenarios.KNOWN, scenarios.NEW_LAPTOP])
    found = _replay(config, captures[0])
    stations = [what for kind, what in found if kind == "station_seen"]
    assert scenarios.NEW_LAPTOP not in stations
    assert not set(scenarios.KNOWN) & set(stations)
    # the rest of the capture is still judged: the three other new stations are reported
    assert len(stations) == 3, found


def test_replay_and_the_service_judge_the_same_capture_alike(captures, tmp_path) -> None:
    """The site's inventory holds the new laptop, reported before but never approved: the service does not
    report it again, so neither may replay. The config approves the site's own stations."""
    config = _config(tmp_path, scenarios.KNOWN)
    site_db = tmp_path / "data" / "netmon" / "inventory.db"
    Inventory(site_db).record_station(scenarios.NEW_LAPTOP, "Apple", "10.0.0.50", 1.0, approved=False)

    service = NetmonService(load_settings(config))
    engine = service.open_engine()
    by_service = []
    for path in captures:
        for linktype, ts, frame in read_capture(path):
            by_service += engine.feed(linktype, ts, frame)
    judged = sorted((f.kind, f.fields.get("mac") or f.fields.get("bssid") or f.signature) for f in by_service)
    service.producer.db.close()

    assert _replay(config, *captures) == judged
    assert ("station_seen", scenarios.NEW_LAPTOP) not in judged
    assert len(judged) == len(scenarios.EXPECTED_WIRED) + len(scenarios.EXPECTED_WIFI) - 1
