"""Camera set-up and evidence handling: the snapshot command, rotation, blurred and pruned snapshots."""

from __future__ import annotations

import os
import time

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_config

from edge.cli import cli
from vision import scenes
from vision.boxes import Detection
from vision.camera import Camera
from vision.doorline import Crossing, DoorLine
from vision.pipeline import Counted, annotate, prune_snapshots, save_snapshot
from vision.tracking import Track


def test_snapshot_command_draws_the_door_line_over_a_frame(tmp_path) -> None:
    video = scenes.write_video(scenes.SCENES["empty_door"](), tmp_path / "door.avi")
    cam = {"url": str(video), "door": "front", "line": [[0.5, 0.0], [0.5, 1.0]], "inside": "left",
           "roi": [0.25, 0.0, 0.75, 1.0]}
    config = write_config(tmp_path / "c.yaml", tmp_path / "data", 1883, None, vision={"cameras": {"cam-1": cam}})
    out = tmp_path / "setup.png"
    result = CliRunner().invoke(cli, ["--config", str(config), "vision", "snapshot", "cam-1", "--out", str(out)],
                                obj={})
    assert result.exit_code == 0, result.output
    image = cv2.imread(str(out))
    assert image.shape == (480, 640, 3) and "640x480" in result.output
    line_col = image[100, 318:323]  # the yellow door line at x = 320 (the green inside arrow is at y = 240)
    assert (line_col[:, 2] > 200).any() and (line_col[:, 1] > 200).any() and (line_col[:, 0] < 80).any()
    missing = CliRunner().invoke(cli, ["--config", str(config), "vision", "snapshot", "cam-9"], obj={})
    assert missing.exit_code != 0 and "no camera 'cam-9' in vision.cameras (configured: cam-1)" in missing.output


def test_rotation_and_width_apply_to_every_frame(tmp_path) -> None:
    video = scenes.write_video(scenes.SCENES["empty_door"](), tmp_path / "door.avi")
    cam = Camera(str(video), rotate=90, width=240)
    cam.start()
    try:
        frame = cam.latest(timeout=10)
    finally:
        cam.stop()
    assert frame is not None and frame.image.shape == (320, 240, 3)  # 640x480 turned to 480x640, then 240 wide


def _counted() -> Counted:
    image = np.full((480, 640, 3), 200, np.uint8)
    image[100:400, 360:520] = np.random.default_rng(0).integers(0, 255, (300, 160, 3), dtype=np.uint8)
    box = Detection(360, 100, 520, 400, 0.99)
    track = Track(id=2, box=box, origin=box, hits=5, last_seen=1.0, missed_s=0.0, velocity=(0.0, 0.0))
    return Counted(Crossing(2, "in", 1.0, box.foot), image, [track])


def test_blurred_snapshot_hides_the_person_but_keeps_the_scene(tmp_path) -> None:
    counted = _counted()
    line = DoorLine((320, 0), (320, 480), "left")
    sharp, blurred = annotate(counted, line, blur=False), annotate(counted, line, blur=True)
    inner = (slice(130, 370), slice(390, 490))
    # Per channel: the inside's green tint shifts the channels' means apart, which is no detail left.
    assert blurred[inner].std(axis=(0, 1)).max() < sharp[inner].std(axis=(0, 1)).min() / 3
    assert np.array_equal(blurred[10:60, 10:200], sharp[10:60, 10:200])
    path = save_snapshot(blurred, tmp_path, "cam-1", 2)
    assert path.parent == tmp_path / "cam-1" and path.read_bytes()[:2] == b"\xff\xd8"


def test_old_and_excess_snapshots_are_pruned_oldest_first(tmp_path) -> None:
    now = time.time()
    for i in range(6):
        path = tmp_path / "cam-1" / f"{i}.jpg"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x" * 1000)
        age = 40 * 86400 if i == 0 else (6 - i) * 60
        os.utime(path, (now - age, now - age))
    removed = prune_snapshots(tmp_path, max_age_s=30 * 86400, max_bytes=3500, now=now)
    assert removed == 3 and sorted(p.name for p in (tmp_path / "cam-1").iterdir()) == ["3.jpg", "4.jpg", "5.jpg"]


def test_a_file_that_does_not_loop_plays_once_and_a_dead_camera_is_offline_from_the_start(tmp_path) -> None:
    video = scenes.write_video(scenes.SCENES["empty_door"](), tmp_path / "door.avi")
    states: list[tuple[bool, str]] = []
    cam = Camera(str(video), on_state=lambda online, reason: states.append((online, reason)))
    cam.start()
    try:
        deadline = time.monotonic() + 15
        while len(states) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)  # a reconnect would come after 1 s
    finally:
        cam.stop()
    assert states == [(True, ""), (False, "end of file")] and cam.frames_read == 30 and cam.ended
    dead_states: list[tuple[bool, str]] = []
    dead = Camera("http://127.0.0.1:9/none.mjpg", reconnect_min_s=0.2, offline_after_s=1,
                  on_state=lambda online, reason: dead_states.append((online, reason)))
    dead.start()
    try:
        deadline = time.monotonic() + 15
        while not dead_states and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        dead.stop()
    assert dead_states[:1] == [(False, "cannot open http://127.0.0.1:9/none.mjpg")] and not dead.ended


def test_a_sites_own_model_needs_its_checksum(tmp_path) -> None:
    from edge.config import ConfigError, load_settings

    config = write_config(tmp_path / "c.yaml", tmp_path / "data", 1883, None,
                          vision={"model": "/etc/sitewarden/ours.tflite"})
    with pytest.raises(ConfigError, match="vision: .*model_sha256"):
        load_settings(config)
