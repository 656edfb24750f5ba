"""Generated door scenes against the real default model: the model sees exactly the pasted people, so tests
built on these scenes measure counting, not detection."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from vision import scenes
from vision.boxes import iou_matrix
from vision.doorline import DoorLine

MIN_SCORE = 0.5
MIN_IOU = 0.5

EXPECTED = {  # name -> (entered, exited)
    "one_person_in": (1, 0),
    "one_person_out": (0, 1),
    "two_people_close": (2, 0),
    "two_people_apart": (2, 0),
    "in_then_out": (1, 1),
    "cat_walks_by": (0, 0),
    "box_slides": (0, 0),
    "empty_door": (0, 0),
}


def test_every_scene_builder_is_listed_with_its_expected_counts():
    assert set(scenes.SCENES) == set(EXPECTED)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_ground_truth_counts_and_crossing_frames(name):
    scene = scenes.SCENES[name]()
    truth = scene.ground_truth
    assert (truth.entered, truth.exited) == EXPECTED[name]
    for crossing in truth.crossings:
        walker = scene.walkers[crossing.walker]
        before, after = walker.center_x(crossing.frame - 1), walker.center_x(crossing.frame)
        assert before is not None and after is not None
        if crossing.direction == "in":
            assert before <= scenes.DOOR_X < after
        else:
            assert after <= scenes.DOOR_X < before


def test_door_line_inside_is_right_of_x_320():
    """The documented DoorLine settings put x > 320 inside, as the ground truth assumes."""
    line = DoorLine(scenes.DOOR_P1, scenes.DOOR_P2, inside=scenes.DOOR_INSIDE)
    assert line.signed_distance((400.0, 240.0)) > 0 > line.signed_distance((200.0, 240.0))


def test_walkers_start_and_end_away_from_the_door():
    for name, build in scenes.SCENES.items():
        for walker in build().walkers:
            (_, first), (_, last) = walker.waypoints[0], walker.waypoints[-1]
            half = walker.sprite.width / 2
            for x in (first, last):
                assert x + half <= 0 or x - half >= scenes.FRAME_W, f"{name}: walker ends in the picture at x={x}"


def test_render_is_deterministic():
    scene = scenes.two_people_close()
    first = [frame for _, frame in zip(range(20), scenes.render(scene), strict=False)]
    again = [frame for _, frame in zip(range(20), scenes.render(scene), strict=False)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert first[0].shape == (scenes.FRAME_H, scenes.FRAME_W, 3) and first[0].dtype == np.uint8


@pytest.mark.parametrize("name", list(EXPECTED))
def test_model_sees_exactly_the_pasted_people(name, person_detector):
    """Every frame: as many detections as people wholly in the picture, each person matched at IoU >= 0.5.
    Frames with someone partly out of the picture may have that person found or not."""
    scene = scenes.SCENES[name]()
    problems, scores = [], []
    for k, frame in enumerate(scenes.render(scene)):
        found = [d for d in person_detector.detect(frame) if d.score >= MIN_SCORE]
        boxes = np.array([[d.x1, d.y1, d.x2, d.y2] for d in found]).reshape(-1, 4)
        people = [p for p in scene.placements(k) if p.person]
        whole = [p for p in people if p.visible]
        if not len(whole) <= len(found) <= len(people):
            problems.append(f"frame {k}: {len(found)} detections, {len(whole)} whole + "
                            f"{len(people) - len(whole)} partial people")
        for person in whole:
            overlap = iou_matrix(np.array([person.box], np.float32), boxes)[0]
            if overlap.size == 0 or overlap.max() < MIN_IOU:
                problems.append(f"frame {k}: walker {person.walker} at {person.box} unmatched")
            else:
                scores.append(found[int(overlap.argmax())].score)
    assert not problems, problems
    seen = f"min person score {min(scores):.3f}" if scores else "no people"
    print(f"{name}: {scene.frames} frames, {seen}")


def test_write_video_reads_back_with_every_frame(tmp_path: Path):
    scene = scenes.one_person_in()
    path = scenes.write_video(scene, tmp_path / "door.avi")
    capture = cv2.VideoCapture(str(path))
    try:
        assert capture.isOpened()
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == scene.frames
        assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(scene.fps)
        read = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            read.append(frame)
    finally:
        capture.release()
    assert len(read) == scene.frames
    assert all(frame.shape == (scenes.FRAME_H, scenes.FRAME_W, 3) for frame in read)
    rendered = next(iter(scenes.render(scene)))
    assert np.abs(read[0].astype(int) - rendered).mean() < 4  # MJPG is lossy, but only slightly


@pytest.mark.parametrize(("name", "module", "dist"), [("cat", "skimage", "scikit-image"),
                                                      ("grace", "matplotlib", "matplotlib")])
def test_missing_photo_package_is_named(name, module, dist, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(scenes.PhotoMissing, match=dist):
        scenes.sprite(name, height=101)
