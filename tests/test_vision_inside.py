"""Naming the inside of a door: a point on the picture or a side, refused on the line, said in the picture's
words at start and shown shaded on every snapshot."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import wait_until, write_config

from edge.cli import cli
from edge.config import ConfigError, load_settings
from edge.config_vision import CameraSettings
from vision import scenes
from vision.boxes import Detection
from vision.doorline import Crossing, DoorLine, LineCounter, describe_inside
from vision.pipeline import Counted, annotate
from vision.tracking import Track, Tracker

DOWN = [[0.5, 0.0], [0.5, 1.0]]  # a door line drawn top to bottom, through the middle of the picture


def _walk_left_to_right(cam: CameraSettings) -> list[str]:
    """The directions a person walking from x = 40 to x = 600 on a 640x480 picture is counted with."""
    line = DoorLine.from_fractions(cam.line[0], cam.line[1], cam.inside, 640, 480, band=cam.band_px)
    tracker, counter = Tracker(), LineCounter(line, anchor=cam.anchor)
    directions = []
    for k, x in enumerate(range(40, 601, 20)):
        tracks = tracker.update([Detection(x - 60, 120, x + 60, 440, 0.95)], k * 0.1)
        directions += [c.direction for c in counter.update(tracks, k * 0.1)]
    return directions


@pytest.mark.parametrize(("inside", "expected"), [
    ([0.8, 0.5], ["in"]),   # the room is the right of the picture: walking right is walking in
    ([0.2, 0.5], ["out"]),  # the room is the left of the picture: the same walk is walking out
    ([0.9, 0.05], ["in"]),  # any point on the right will do, even in a corner
    ("left", ["in"]),       # the old spelling: your left walking down the line is the picture's right
    ("right", ["out"]),
])
def test_an_inside_point_on_either_side_sets_the_direction_of_crossing(inside, expected) -> None:
    cam = CameraSettings(url="door.avi", door="front", line=DOWN, inside=inside)
    assert _walk_left_to_right(cam) == expected


@pytest.mark.parametrize("point", [[0.5, 0.5], [0.5, 0.02], [0.505, 0.9]])
def test_an_inside_point_on_the_door_line_is_refused_naming_the_key(tmp_path, point) -> None:
    cam = {"url": "door.avi", "door": "front", "line": DOWN, "inside": point}
    config = write_config(tmp_path / "c.yaml", tmp_path / "data", 1883, None, vision={"cameras": {"cam-1": cam}})
    with pytest.raises(ConfigError) as err:
        load_settings(config)
    (problem,) = err.value.problems
    assert str(problem).startswith("vision.cameras.cam-1.inside") and "lies on the door line" in str(problem)


@pytest.mark.parametrize(("line", "inside", "words"), [
    (DOWN, "left", "inside is the RIGHT of the picture (x > 0.5) for the line (0.5,0)->(0.5,1) (set by `inside: "
                   "left`)"),
    (DOWN, [0.2, 0.5], "inside is the LEFT of the picture (x < 0.5) for the line (0.5,0)->(0.5,1) (set by the "
                       "point (0.2,0.5))"),
    ([[0.0, 0.6], [1.0, 0.6]], "left", "inside is the TOP of the picture (y < 0.6)"),
    ([[0.0, 0.6], [1.0, 0.6]], [0.5, 0.9], "inside is the BOTTOM of the picture (y > 0.6)"),
    ([[0.2, 0.0], [0.8, 1.0]], [0.9, 0.1], "inside is the RIGHT of the picture (the side of the line towards the "
                                           "top right corner)"),
])
def test_the_inside_is_stated_in_the_pictures_words(line, inside, words) -> None:
    cam = CameraSettings(url="door.avi", door="front", line=line, inside=inside)
    assert describe_inside(cam.line[0], cam.line[1], cam.inside).startswith(words)


def _tint(after: np.ndarray, before: np.ndarray) -> np.ndarray:
    """How much greener than before each pixel is (green gained minus the mean of blue and red gained)."""
    gained = after.astype(np.int32) - before.astype(np.int32)
    return gained[..., 1] - (gained[..., 0] + gained[..., 2]) / 2


@pytest.mark.parametrize(("inside", "inside_x", "outside_x"), [([0.2, 0.5], 80, 560), ("left", 560, 80)])
def test_a_crossing_snapshot_shades_and_labels_the_inside(inside, inside_x, outside_x) -> None:
    cam = CameraSettings(url="door.avi", door="front", line=DOWN, inside=inside)
    line = DoorLine.from_fractions(cam.line[0], cam.line[1], cam.inside, 640, 480)
    image = np.full((480, 640, 3), 128, np.uint8)
    box = Detection(280, 200, 360, 460, 0.9)
    track = Track(id=1, box=box, origin=box, hits=5, last_seen=1.0, missed_s=0.0, velocity=(0.0, 0.0))
    marked = annotate(Counted(Crossing(1, "in", 1.0, box.foot), image, [track]), line, blur=False)
    tint = _tint(marked, image)
    assert tint[300:400, inside_x - 30:inside_x + 30].min() > 30  # the inside, away from boxes and labels, shaded
    assert np.array_equal(marked[300:400, outside_x - 30:outside_x + 30], image[300:400, outside_x - 30:outside_x + 30])
    # The INSIDE label: white text on the inside half, near the top of the line.
    white = (marked[:200] > 240).all(axis=2)
    xs = np.nonzero(white)[1]
    assert xs.size > 50 and ((xs < 320).all() if inside_x < 320 else (xs > 320).all())


def test_the_snapshot_command_shades_the_inside_and_says_which_side_it_is(tmp_path) -> None:
    video = scenes.write_video(scenes.SCENES["empty_door"](), tmp_path / "door.avi")
    cam = {"url": str(video), "door": "front", "line": DOWN, "inside": [0.2, 0.5]}
    config = write_config(tmp_path / "c.yaml", tmp_path / "data", 1883, None, vision={"cameras": {"cam-1": cam}})
    out = tmp_path / "setup.png"
    result = CliRunner().invoke(cli, ["--config", str(config), "vision", "snapshot", "cam-1", "--out", str(out)],
                                obj={})
    assert result.exit_code == 0, result.output
    assert "cam-1: inside is the LEFT of the picture (x < 0.5)" in result.output
    capture = cv2.VideoCapture(str(video))
    ok, frame = capture.read()
    capture.release()
    assert ok
    tint = _tint(cv2.imread(str(out)), frame)
    assert np.median(tint[250:430, 20:280]) > 30 and abs(np.median(tint[250:430, 360:620])) < 5


def test_the_vision_service_states_at_start_which_side_is_inside(tmp_path, mqtt_broker, service_factory) -> None:
    video = scenes.write_video(scenes.SCENES["empty_door"](), tmp_path / "door.avi")
    cams = {"cam-front": {"url": str(video), "door": "front", "line": [[0.5, 0.05], [0.5, 0.95]], "inside": "left"},
            "cam-back": {"url": str(video), "door": "back", "line": DOWN, "inside": [0.25, 0.5]}}
    config = write_config(tmp_path / "c.yaml", tmp_path / "data", mqtt_broker.port, None, vision={"cameras": cams})
    service = service_factory(config, "vision")
    expected = ["camera cam-front (door front): inside is the RIGHT of the picture (x > 0.5) for the line "
                "(0.5,0.05)->(0.5,0.95) (set by `inside: left`)",
                "camera cam-back (door back): inside is the LEFT of the picture (x < 0.5) for the line "
                "(0.5,0)->(0.5,1) (set by the point (0.25,0.5))"]
    wait_until(lambda: all(line in service.output() for line in expected), 30, "both cameras' inside stated")


def test_the_demo_camera_names_its_inside_with_a_point_and_still_counts_walking_right_as_in(tmp_path) -> None:
    from vision.demo import demo_settings

    video = tmp_path / "vision" / "demo-door.avi"  # the settings are under test, not the video: skip rendering it
    video.parent.mkdir()
    video.touch()
    cam = CameraSettings(**demo_settings(tmp_path)["cameras"]["cam-front"])
    assert not isinstance(cam.inside, str) and _walk_left_to_right(cam) == ["in"]
