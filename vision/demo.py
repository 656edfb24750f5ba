"""The demo's camera: a live MJPEG stream of a generated door, following the demo's story clock.

Each cycle of the story (edge.demo_story) the badge simulator grants Alice at the front door 3 s in; this camera
shows the empty door, then, from `LEAD_S`, Alice with someone right behind her (two people on one grant), then
the empty door until the cycle ends. The frame sent at any instant is the one the schedule says is due then,
so the video and the door script start each cycle together and never drift apart: every cycle raises one
tailgating alert with its snapshot, none an unauthorized entry.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import cv2
import numpy as np

from edge.brokers import free_port
from edge.config import Settings
from edge.demo_story import STORY, STORY_PERIOD_S, StorySchedule
from vision import scenes
from vision.mjpeg import stream_server, write_part

logger = logging.getLogger(__name__)

DOOR = "front"  # firmware_bridge.demo.FRONT; vision imports nothing of the badge service
CAMERA = "cam-front"
IDLE_VARIANTS = 10  # noisy frames of the empty door, shown in turn while nobody is in the picture
LEAD_S = 2.0  # empty door at the start of each cycle; the two walk in 4-5 s into it, just after the grant


def story_scene(period_s: float = STORY_PERIOD_S) -> scenes.Scene:
    """One cycle of the camera's video: exactly `period_s` long, the two people entering `LEAD_S` in."""
    base = scenes.SCENES["two_people_close"]()
    lead, frames = round(LEAD_S * base.fps), round(period_s * base.fps)
    walkers = tuple(replace(w, waypoints=tuple((k + lead, x) for k, x in w.waypoints)) for w in base.walkers)
    scene = replace(base, name="demo", frames=frames, walkers=walkers)
    if frames < base.frames + lead:
        raise ValueError(f"the story's cycle of {period_s:g} s is shorter than the door video "
                         f"({(base.frames + lead) / base.fps:g} s)")
    return scene


def frame_index(schedule: StorySchedule | None, t: float, fps: float, frames: int) -> int:
    """The video frame due at `t` (time.monotonic()): the cycle's offset times fps; the empty door (frame 0)
    before the story starts."""
    if schedule is None:
        return 0
    cycle, offset = schedule.position(t)
    if cycle < 0:
        return 0
    return min(int(offset * fps), frames - 1)


def demo_settings(data_dir: Path) -> dict[str, Any]:
    """The `vision` section the demo runs with: one camera at the front door, reading the demo's stream.

    The photos the video is made of load here, so a missing one stops the demo before anything starts.
    """
    scenes.two_people_close()
    STORY.join("vision")
    return {
        "cameras": {
            CAMERA: {"url": f"http://127.0.0.1:{free_port()}/door.mjpg", "door": DOOR,
                     "line": [[scenes.DOOR_X / scenes.FRAME_W, 0.0], [scenes.DOOR_X / scenes.FRAME_W, 1.0]],
                     # A point in the room, x > DOOR_X (what scenes.DOOR_INSIDE "left" means for this line).
                     "inside": [(scenes.DOOR_X + scenes.FRAME_W) / 2 / scenes.FRAME_W, 0.5]},
        },
    }


def _jpeg(frame: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", frame)[1].tobytes()


class StoryCamera:
    """Serves the story's frames at http://127.0.0.1:<port>/ (any path) as multipart MJPEG, as IP cameras do.

    Says the camera part of the story is ready once every frame is encoded and a client (the vision service's
    camera) is reading.
    """

    def __init__(self, scene: scenes.Scene, port: int) -> None:
        self.scene = scene
        self.period_s = 1.0 / scene.fps
        self.jpegs: list[bytes] = []
        self.rendered = threading.Event()
        self.live = threading.Event()
        self.server = stream_server(port, self.serve)

    def render_first(self) -> None:
        """Encode the first frame (the empty door), served until the rest is ready."""
        self.jpegs = [_jpeg(next(scenes.render(self.scene)))]

    def render(self) -> None:
        """Encode every frame. Most of a cycle shows the empty door: those frames come from a few noisy
        variants, so the stream is ready seconds sooner on a busy box."""
        wall = scenes.background(self.scene.seed).astype(np.float32)
        rng = np.random.default_rng(self.scene.seed + 1)
        empty = scenes.Scene(self.scene.name, 1, (), self.scene.fps, self.scene.seed)
        idle = [_jpeg(scenes.render_frame(empty, 0, wall, rng)) for _ in range(IDLE_VARIANTS)]
        self.jpegs = [_jpeg(scenes.render_frame(self.scene, k, wall, rng)) if self.scene.placements(k)
                      else idle[k % IDLE_VARIANTS] for k in range(self.scene.frames)]
        self.rendered.set()

    def serve(self, out: BinaryIO) -> None:
        """Write the due frame every 1/fps s until the client goes or the camera stops."""
        next_at = time.monotonic()
        while self.live.is_set():
            k = frame_index(STORY.schedule, time.monotonic(), self.scene.fps, self.scene.frames)
            jpegs = self.jpegs
            write_part(out, jpegs[k] if k < len(jpegs) else jpegs[0])
            if self.rendered.is_set():
                STORY.ready("vision")
            next_at += self.period_s
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind (a busy box): skip ahead; the frame shown follows the clock anyway
                next_at, delay = time.monotonic(), 0.0
            time.sleep(delay)

    def run(self, stop: threading.Event) -> None:
        """Serve until `stop`."""
        self.render_first()
        self.live.set()
        thread = threading.Thread(target=self.server.serve_forever, name="demo-camera", daemon=True)
        thread.start()
        try:
            self.render()
            stop.wait()
        finally:
            self.live.clear()
            self.server.shutdown()
            self.server.server_close()
            thread.join(5)


def run_demo_camera(settings: Settings, stop: threading.Event) -> None:
    """The vision service's simulator in the demo: the front door's camera stream."""
    url = settings.vision.cameras[CAMERA].url
    port = urlsplit(url).port
    if port is None:
        raise ValueError(f"vision.cameras.{CAMERA}.url: {url} names no port")
    StoryCamera(story_scene(), port).run(stop)
