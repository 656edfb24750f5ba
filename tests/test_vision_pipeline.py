"""The whole counting pipeline (motion gate, real model, tracker, door line) on the generated door scenes,
and the vision service end to end: a video file as the camera, the real broker, the edge's tailgating rule."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import SITE, wait_until, write_config

from edge import topics
from edge.config_vision import CameraSettings, VisionSettings
from edge.events import AccessGranted, dump_event
from vision import scenes
from vision.mjpeg import MjpegCamera
from vision.pipeline import DoorWatch

CAMERA = {"line": [[0.5, 0.0], [0.5, 1.0]], "inside": "left", "door": "front"}


def count(scene: scenes.Scene, detector) -> tuple[int, int, DoorWatch]:
    watch = DoorWatch(CameraSettings(url="x", **CAMERA), VisionSettings(), detector)
    entered = exited = 0
    for k, frame in enumerate(scenes.render(scene)):
        for counted in watch.process(frame, k / scene.fps):
            entered += counted.crossing.direction == "in"
            exited += counted.crossing.direction == "out"
    return entered, exited, watch


@pytest.mark.parametrize("name", sorted(scenes.SCENES))
def test_counts_match_the_ground_truth_on_every_scene(name, person_detector) -> None:
    scene = scenes.SCENES[name]()
    truth = scene.ground_truth
    entered, exited, _ = count(scene, person_detector)
    assert (entered, exited) == (truth.entered, truth.exited)


def test_an_idle_door_runs_the_detector_only_as_a_heartbeat(person_detector) -> None:
    scene = scenes.SCENES["empty_door"]()
    _, _, watch = count(scene, person_detector)
    # 30 frames over 3 s at 10 fps: the first frame and one heartbeat every 2 s, not 30 detector runs
    assert watch.stats.frames == scene.frames and watch.stats.detector_runs <= 3


def test_a_box_sliding_moves_the_gate_but_counts_nobody(person_detector) -> None:
    scene = scenes.SCENES["box_slides"]()
    entered, exited, watch = count(scene, person_detector)
    assert (entered, exited) == (0, 0) and watch.stats.detector_runs > 10


def _vision_config(tmp_path: Path, video: Path, port: int, **extra) -> Path:
    cam = {"url": str(video), **CAMERA, **extra}
    return write_config(tmp_path / "config.yaml", tmp_path / "data", port, None,
                        rules={"tailgate_window_s": 10, "entry_grace_s": 0.3},
                        vision={"cameras": {"cam-front": cam}, "idle_detect_s": 1.0})


def _grant(client, who: str) -> None:
    fact = AccessGranted(site=SITE, source="badge/controller-1", door="front", credential="H10301:1/****1",
                         cardholder=who)
    client.publish(topics.fact_topic(SITE, "badge", "controller-1", "access_granted"), dump_event(fact))


@pytest.mark.parametrize(("scene_name", "grants", "alerts"), [
    ("one_person_in", ["Ann"], []),
    ("two_people_close", ["Ann"], ["tailgate_detected"]),
    ("two_people_close", ["Ann", "Bob"], []),
    ("one_person_in", [], ["unauthorized_entry"]),
])
def test_service_end_to_end_grants_against_people(tmp_path, mqtt_broker, client_factory, service_factory,
                                                  scene_name, grants, alerts) -> None:
    video = scenes.write_video(scenes.SCENES[scene_name](), tmp_path / f"{scene_name}.avi")
    config = _vision_config(tmp_path, video, mqtt_broker.port)
    watcher = client_factory(mqtt_broker.port)
    watcher.subscribe(topics.facts_filter(SITE))
    watcher.subscribe(topics.alerts_filter(SITE))
    watcher.subscribe(topics.status_topic(SITE, "edge"))
    service_factory(config, "edge")
    wait_until(lambda: any(m.payload == b"online" for m in watcher.messages), 15, "the edge online")
    device = client_factory(mqtt_broker.port)
    for who in grants:
        _grant(device, who)
    service_factory(config, "vision")
    truth = scenes.SCENES[scene_name]().ground_truth
    fact_prefix = f"sitewarden/{SITE}/vision/"

    def entries() -> list[dict]:
        return [p for p in watcher.payloads(fact_prefix) if p["kind"] == "person_entered"]

    wait_until(lambda: len(entries()) >= truth.entered, 40, f"{truth.entered} person_entered facts")
    entered = entries()
    assert len(entered) == truth.entered
    assert all(p["door"] == "front" and p["camera"] == "cam-front" for p in entered)
    snapshot = tmp_path / "data" / entered[-1]["snapshot"]
    assert snapshot.is_file() and snapshot.read_bytes()[:2] == b"\xff\xd8"
    alert_prefix = f"sitewarden/{SITE}/alert/"

    def door_alerts() -> list[dict]:  # the camera going offline at the end of the file is another matter
        return [m for m in watcher.payloads(alert_prefix)
                if m["alert"]["kind"] in ("tailgate_detected", "unauthorized_entry")]

    if alerts:
        got = wait_until(door_alerts, 10, f"alert {alerts}")
        assert {m["alert"]["kind"] for m in got} == set(alerts)
        evidence = got[-1]["alert"]["evidence"]
        assert any(e["kind"] == "snapshot" and e["ref"] == entered[-1]["snapshot"] for e in evidence)
    else:
        time.sleep(1.5)  # longer than the grace and two rule ticks: nothing may come
        assert door_alerts() == []


def test_a_stream_cut_and_restored_goes_offline_then_online_and_counting_resumes(
        tmp_path, mqtt_broker, client_factory, service_factory) -> None:
    camera = MjpegCamera(list(scenes.render(scenes.SCENES["empty_door"]()))).restore()
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", mqtt_broker.port, None,
                          vision={"cameras": {"cam-front": {"url": camera.url,
                                                            **CAMERA}},
                                  "offline_after_s": 2, "reconnect_min_s": 0.5, "reconnect_max_s": 1})
    watcher = client_factory(mqtt_broker.port)
    watcher.subscribe(topics.facts_filter(SITE))
    prefix = f"sitewarden/{SITE}/vision/"

    def kinds() -> list[str]:
        return [p["kind"] for p in watcher.payloads(prefix)]

    try:
        service_factory(config, "vision")
        wait_until(lambda: "device_came_online" in kinds(), 30, "the camera online")
        camera.cut()
        wait_until(lambda: "device_went_offline" in kinds(), 15, "the camera offline after the cut")
        time.sleep(1.5)  # a few refused reconnects
        camera.show(list(scenes.render(scenes.SCENES["one_person_in"]())))
        camera.restore()
        wait_until(lambda: kinds().count("device_came_online") == 2, 30, "the camera online again")
        wait_until(lambda: "person_entered" in kinds(), 30, "the person after the restore counted")
        offline = next(p for p in watcher.payloads(prefix) if p["kind"] == "device_went_offline")
        assert offline["device_id"] == "vision/cam-front" and offline["device_type"] == "camera"
        assert kinds().count("person_entered") == 1
    finally:
        camera.cut()
