"""A full data directory: the edge says so once, waits with backoff, loses nothing and resumes by itself."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import SITE, query, wait_until, write_config

from edge import topics
from edge.events import AccessDenied, DoorOpened, dump_event

DATA_DIR_BYTES = 4 * 1024 * 1024
FULL_LINE = "is full ("


@pytest.fixture
def small_data_dir(tmp_path: Path) -> Any:
    """A 4 MB tmpfs mounted as the edge's data directory, so that the disk really fills (needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs as the data directory needs root")
    data = tmp_path / "data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DATA_DIR_BYTES}", "tmpfs", str(data)], check=True)
    stoppers: list[Any] = []
    try:
        yield data, stoppers.append
    finally:
        for stop in stoppers:  # nothing may hold a file open on it at unmount
            stop()
        subprocess.run(["umount", str(data)], check=True)


def _fill(path: Path) -> None:
    """Write zeros until the file system refuses."""
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as out:
        while True:
            try:
                out.write(chunk)
            except OSError as err:
                assert err.errno == errno.ENOSPC
                chunk = chunk[: len(chunk) // 2]
                if not chunk:
                    return


def _forced(door: str) -> bytes:
    return dump_event(DoorOpened(site=SITE, source="badge/ctl-1", door=door))


def test_edge_waits_out_a_full_disk_and_loses_nothing(small_data_dir, tmp_path: Path, mqtt_broker, service_factory,
                                                      client_factory) -> None:
    """Before: a raw sqlite3.OperationalError traceback after "edge stopped", then a crash loop under systemd.
    Now: one CRITICAL line naming the directory and its free space, a retained degraded health in the stats,
    facts held unacknowledged, and after space returns every fact stored and alerted exactly once, including
    across a restart while the disk is full (no alert message sent twice on the local alert topic)."""
    data, on_teardown = small_data_dir
    config = write_config(tmp_path / "config.yaml", data, mqtt_broker.port, None)
    edge = service_factory(config, "edge")
    on_teardown(edge.stop)
    watcher = client_factory(mqtt_broker.port)
    watcher.subscribe(topics.alerts_filter(SITE))
    watcher.subscribe(topics.stats_topic(SITE, "edge"))
    device = client_factory(mqtt_broker.port)
    db = data / "edge.db"

    def alerts() -> list[dict]:
        return watcher.payloads(topics.alert_topic(SITE, "door_forced_open"))

    def health() -> dict:
        stats = watcher.payloads(topics.stats_topic(SITE, "edge"))
        return stats[-1].get("health", {}) if stats else {}

    device.publish(topics.fact_topic(SITE, "badge", "ctl-1", "door_opened"), _forced("door-a"))
    wait_until(lambda: len(alerts()) == 1, 10, "the alert for door-a")
    wait_until(lambda: query(db, "SELECT acked_seq FROM alert_feed") == [(1,)], 10, "door-a's delivery recorded")

    _fill(data / "filler")
    doors = [f"door-b{i}" for i in range(5)]
    for door in doors:
        device.publish(topics.fact_topic(SITE, "badge", "ctl-1", "door_opened"), _forced(door))
    degraded = wait_until(lambda: health().get("attempts", 0) >= 3 and health(), 30, "three tries on a full disk")
    assert degraded["state"] == "degraded" and degraded["reason"] == "disk_full"
    assert degraded["data_dir"] == str(data) and isinstance(degraded["free_bytes"], int)
    assert edge.proc is not None and edge.proc.poll() is None, edge.output()
    first_run = edge.output()
    full_lines = [line for line in first_run.splitlines() if FULL_LINE in line]
    assert len(full_lines) == 1, first_run
    assert "CRITICAL" in full_lines[0] and str(data) in full_lines[0] and "bytes free" in full_lines[0]
    assert "Traceback" not in first_run and first_run.count("CRITICAL") == 1, first_run
    assert len(alerts()) == 1

    edge.stop()  # a restart while the disk is still full: the held facts come again from the broker
    edge.start()
    wait_until(lambda: FULL_LINE in edge.output()[len(first_run):], 20, "the restarted edge to meet the full disk")

    (data / "filler").unlink()
    wait_until(lambda: len(alerts()) >= 1 + len(doors), 60, "the alerts for the held facts")
    wait_until(lambda: health().get("state") == "ok", 10, "the degraded health to clear")
    wait_until(lambda: query(db, "SELECT acked_seq = (SELECT max(seq) FROM alert_messages) FROM alert_feed")
               == [(1,)], 10, "every delivery recorded")
    got = alerts()
    assert sorted(m["alert"]["door"] for m in got) == sorted(["door-a", *doors])
    every = watcher.payloads(f"sitewarden/{SITE}/alert/")
    assert len({m["message_id"] for m in every}) == len(every), "an alert message was sent twice"
    assert query(db, "SELECT count(*) FROM facts WHERE kind = 'door_opened'") == [(1 + len(doors),)]
    output = edge.output()
    assert output.count(FULL_LINE) == 2, output  # once per run
    assert "has room again" in output and "Traceback" not in output
    assert output.count("forced open: no badge") == 1 + len(doors), "alerts that rolled back were logged"
    assert edge.proc.poll() is None


def test_restart_on_a_full_disk_does_not_resend_a_delivered_alert(small_data_dir, tmp_path: Path, mqtt_broker,
                                                                   service_factory, client_factory) -> None:
    """The issue's crash loop: the broker's acknowledgement of the last alert message was to be recorded in the
    same transaction as the next facts; that one failed on the full disk, so every restart sent the message
    again. Now the acknowledgement is recorded on its own (a few bytes still fit where a big fact does not)."""
    data, on_teardown = small_data_dir
    config = write_config(tmp_path / "config.yaml", data, mqtt_broker.port, None, rules={"max_open_s": 3600})
    edge = service_factory(config, "edge")
    on_teardown(edge.stop)
    watcher = client_factory(mqtt_broker.port)
    watcher.subscribe(f"sitewarden/{SITE}/alert/#")
    watcher.subscribe(topics.stats_topic(SITE, "edge"))
    device = client_factory(mqtt_broker.port)

    def health() -> dict:
        stats = watcher.payloads(topics.stats_topic(SITE, "edge"))
        return stats[-1].get("health", {}) if stats else {}

    filler = data / "filler"
    _fill(filler)
    os.truncate(filler, filler.stat().st_size - 192 * 1024)  # room for a small fact and its alert, no more
    device.publish(topics.fact_topic(SITE, "badge", "ctl-1", "door_opened"), _forced("door-a"))
    wait_until(lambda: watcher.payloads(f"sitewarden/{SITE}/alert/"), 10, "the alert for door-a")
    big = AccessDenied(site=SITE, source="badge/ctl-1", door="door-b", credential="raw:26bit",
                       reason="x" * 240_000)
    device.publish(topics.fact_topic(SITE, "badge", "ctl-1", "access_denied"), dump_event(big))
    wait_until(lambda: health().get("state") == "degraded", 20, "the degraded health")

    for _ in range(2):
        edge.stop()
        edge.start()
        wait_until(lambda: health().get("state") == "degraded" and health().get("attempts") == 1, 20,
                   "the restarted edge to meet the full disk")
    assert len(watcher.payloads(f"sitewarden/{SITE}/alert/")) == 1, "an alert message was sent again"

    filler.unlink()
    wait_until(lambda: query(data / "edge.db", "SELECT count(*) FROM facts") == [(2,)], 30, "the big fact stored")
    wait_until(lambda: health().get("state") == "ok", 10, "the degraded health to clear")
    edge.stop()
    edge.start()
    device.publish(topics.fact_topic(SITE, "badge", "ctl-1", "door_opened"), _forced("door-c"))
    got = wait_until(lambda: [m for m in watcher.payloads(f"sitewarden/{SITE}/alert/")
                              if m["alert"]["door"] == "door-c"], 10, "the alert for door-c")
    doors = [m["alert"]["door"] for m in watcher.payloads(f"sitewarden/{SITE}/alert/")]
    assert doors.count("door-a") == 1 and len(got) == 1, doors
