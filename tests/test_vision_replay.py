"""`sitewarden vision replay`: a generated door video through a camera's pipeline offline, as a real process,
with exact counts, a snapshot per crossing, no broker and no stored fact; bad input is one clear line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_config

from vision import scenes

REPLAY_DEADLINE_S = 120.0
CROSSING = re.compile(r"^(\d\d):(\d\d\.\d{3})  (in |out)  track #(\d+)  (\S+\.jpg)$")
DOWN = [[0.5, 0.0], [0.5, 1.0]]


def _config(tmp_path: Path, inside) -> Path:
    cam = {"url": "rtsp://127.0.0.1:8554/never-opened", "door": "front", "line": DOWN, "inside": inside}
    # The broker port is never connected to: replay needs no broker.
    return write_config(tmp_path / "config.yaml", tmp_path / "data", 9, None, vision={"cameras": {"cam-front": cam}})


def _replay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge.cli", "vision", "replay", *args], capture_output=True,
                          text=True, timeout=REPLAY_DEADLINE_S)


@pytest.mark.parametrize(("scene_name", "inside", "directions"), [
    ("in_then_out", [0.8, 0.5], ["in", "out"]),
    ("two_people_close", [0.8, 0.5], ["in", "in"]),
    ("one_person_in", [0.8, 0.5], ["in"]),
    ("one_person_in", [0.2, 0.5], ["out"]),  # the same walk, the room on the other side: an exit
])
def test_replay_prints_each_crossing_and_the_exact_totals_of_a_door_video(tmp_path, scene_name, inside,
                                                                          directions) -> None:
    scene = scenes.SCENES[scene_name]()
    video = scenes.write_video(scene, tmp_path / f"{scene_name}.avi")
    out = tmp_path / "out"
    result = _replay(str(video), "--camera", "cam-front", "--config", str(_config(tmp_path, inside)),
                     "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    side = "RIGHT" if inside[0] > 0.5 else "LEFT"
    assert lines[0].startswith(f"cam-front: inside is the {side} of the picture")
    crossings = [m.groups() for m in map(CROSSING.match, lines) if m]
    assert [c[2].strip() for c in crossings] == directions
    entered, exited = directions.count("in"), directions.count("out")
    for minutes, seconds, _, _, path in crossings:
        assert 0 < int(minutes) * 60 + float(seconds) < scene.frames / scene.fps
        snapshot = Path(path)
        assert snapshot.parent == out / "cam-front" and snapshot.read_bytes()[:2] == b"\xff\xd8"
    assert len(list((out / "cam-front").glob("*.jpg"))) == len(directions)
    assert f"cam-front: {entered} in, {exited} out in {scene.frames} frames" in lines[-1]
    assert not (tmp_path / "data").exists()  # no store, no facts


def test_replay_of_a_bad_file_or_an_unknown_camera_is_one_clear_line(tmp_path) -> None:
    config = str(_config(tmp_path, [0.8, 0.5]))
    video = scenes.write_video(scenes.SCENES["empty_door"](1.0), tmp_path / "door.avi")
    not_video = tmp_path / "notes.avi"
    not_video.write_text("not a video\n")
    cases = [
        ([str(tmp_path / "missing.avi"), "--camera", "cam-front"], f"Error: cannot replay {tmp_path}/missing.avi: "
                                                                   "no such file"),
        ([str(not_video), "--camera", "cam-front"], f"Error: cannot replay {not_video}: "),
        ([str(video), "--camera", "cam-back"], "Error: no camera 'cam-back' in vision.cameras (configured: "
                                               "cam-front)"),
    ]
    for args, message in cases:
        result = _replay(*args, "--config", config)
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
        assert result.returncode == 1 and len(errors) == 1 and errors[0].startswith(message), result.stderr
        assert "Traceback" not in result.stderr
