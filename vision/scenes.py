"""Generated door videos with known ground truth: packaged photos walked across a door line, for tests and demos.

People are cut out of photos that ship in packages the model can see (DESIGN.md, "Person detection models"):
Grace Hopper from matplotlib (`mpl-data/sample_data/grace_hopper.jpg`) and the cameraman from scikit-image
(`skimage/data/camera.png`); the astronaut is left out because the default model misses her. Things that
move but are not people: the cat from scikit-image (`chelsea.png`) and a drawn cardboard box. Both packages
are in sitewarden's `demo` extra (`PHOTO_PACKAGES`; the `dev` extra includes it), imported only when a sprite
is first loaded; `PhotoMissing` names the one to install.

Door line. Frames are 640x480. The door is the vertical line x = 320, `DOOR_P1` = (320, 0) to
`DOOR_P2` = (320, 480); outside is x < 320 and inside is x > 320, so walking in is walking to the right.
For `vision.doorline.DoorLine` that is `DoorLine(DOOR_P1, DOOR_P2, inside=DOOR_INSIDE)` with
`DOOR_INSIDE = "left"`: walking down the line from p1 to p2, x > 320 is on your left.

Ground truth comes from the walkers' paths, never from a detector: a person's crossing is the first frame in
which the centre of their pasted box is on the other side of x = 320 (x > 320 counts as inside). Only
people count; the cat and the box cross the line without entering. `Scene.placements(k)` gives every
walker's box in frame k, for scoring detections.

    scene = SCENES["two_people_close"]()
    for k, frame in enumerate(render(scene)):  # BGR uint8, 480x640x3, the same every run
        ...
    write_video(scene, Path("door.avi"))  # MJPG in AVI, read back by cv2.VideoCapture
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import Literal

import cv2
import numpy as np

FRAME_W, FRAME_H = 640, 480
DOOR_X = 320
DOOR_P1: tuple[float, float] = (float(DOOR_X), 0.0)
DOOR_P2: tuple[float, float] = (float(DOOR_X), float(FRAME_H))
DOOR_INSIDE: Literal["left"] = "left"
FLOOR_Y = 470  # where the bottom edge of every sprite stands
FPS = 10
WALK_SPEED_PX_S = 256.0  # across the 640 px frame in 2.5 s
NOISE_SIGMA = 2.0  # per-frame sensor noise, grey levels
LEAD_IN_FRAMES = 5  # idle door before anyone shows up, for background models
TAIL_FRAMES = 10  # idle door after everyone has gone, for trackers to finish
PERSON_HEIGHT_PX = 290
FOURCC = "MJPG"  # motion JPEG in AVI: written and read by opencv-python-headless's bundled FFmpeg

Direction = Literal["in", "out"]
Box = tuple[int, int, int, int]  # x1, y1, x2, y2 in frame pixels, x2/y2 exclusive


PHOTO_PACKAGES = ("matplotlib", "scikit-image")  # the distributions the photos come from


class PhotoMissing(RuntimeError):
    """A photo a scene is made of is not installed; the message names the package that ships it."""


@dataclass(frozen=True)
class Sprite:
    """A picture to paste: BGR pixels, an alpha mask (0-1) and whether it shows a person."""

    name: str
    person: bool
    image: np.ndarray = field(repr=False, compare=False)
    alpha: np.ndarray = field(repr=False, compare=False)

    @property
    def width(self) -> int:
        """Width in pixels."""
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        """Height in pixels."""
        return int(self.image.shape[0])


@dataclass(frozen=True)
class Walker:
    """A sprite moving along the floor: its box centre x at given frames, straight lines in between.

    Before the first waypoint and after the last the walker is not in the picture. A sprite moving left is
    shown mirrored, so a walker who turns round faces the way it goes.
    """

    sprite: Sprite
    waypoints: tuple[tuple[int, float], ...]  # (frame index, box centre x), frame indices increasing
    bottom: int = FLOOR_Y

    def center_x(self, frame: int) -> float | None:
        """The box centre's x in `frame`, or None when the walker is not in the picture then."""
        frames = [k for k, _ in self.waypoints]
        if not frames[0] <= frame <= frames[-1]:
            return None
        return float(np.interp(frame, frames, [x for _, x in self.waypoints]))

    def box(self, frame: int) -> Box | None:
        """The pasted box in `frame` (may reach past the frame's edges), or None when absent."""
        x = self.center_x(frame)
        if x is None:
            return None
        x1 = round(x - self.sprite.width / 2)
        return x1, self.bottom - self.sprite.height, x1 + self.sprite.width, self.bottom

    def mirrored(self, frame: int) -> bool:
        """True when the walker moves (or last moved) to the left at `frame`."""
        going_left = False
        for (k0, x0), (_, x1) in zip(self.waypoints, self.waypoints[1:], strict=False):
            if k0 > frame:
                break
            if x1 != x0:
                going_left = x1 < x0
        return going_left


@dataclass(frozen=True)
class TruthCrossing:
    """Walker `walker` (index into `Scene.walkers`) crossed the door line, first seen across in `frame`."""

    walker: int
    direction: Direction
    frame: int


@dataclass(frozen=True)
class GroundTruth:
    """What a perfect counter reports for a scene: people in, people out, and when each crossed."""

    entered: int
    exited: int
    crossings: tuple[TruthCrossing, ...]


@dataclass(frozen=True)
class Placement:
    """Where one walker is in one frame; `visible` means its whole box is inside the frame."""

    walker: int
    person: bool
    box: Box
    visible: bool


@dataclass(frozen=True)
class Scene:
    """A door video: `frames` frames at `fps`, the walkers in it, and a seed for its texture and noise."""

    name: str
    frames: int
    walkers: tuple[Walker, ...]
    fps: int = FPS
    seed: int = 0

    @property
    def seconds(self) -> float:
        """Length of the video."""
        return self.frames / self.fps

    @property
    def ground_truth(self) -> GroundTruth:
        """Entries, exits and crossing frames, worked out from the people's paths."""
        crossings = []
        for i, walker in enumerate(self.walkers):
            if not walker.sprite.person:
                continue
            before = None
            for k in range(self.frames):
                x = walker.center_x(k)
                inside = None if x is None else x > DOOR_X
                if before is not None and inside is not None and inside != before:
                    crossings.append(TruthCrossing(i, "in" if inside else "out", k))
                before = inside
        crossings.sort(key=lambda c: (c.frame, c.walker))
        return GroundTruth(sum(c.direction == "in" for c in crossings), sum(c.direction == "out" for c in crossings),
                           tuple(crossings))

    def placements(self, frame: int) -> list[Placement]:
        """Every walker in the picture in `frame` (even partly), in walker order."""
        found = []
        for i, walker in enumerate(self.walkers):
            box = walker.box(frame)
            if box is None or box[2] <= 0 or box[0] >= FRAME_W:
                continue
            visible = box[0] >= 0 and box[2] <= FRAME_W and box[1] >= 0 and box[3] <= FRAME_H
            found.append(Placement(i, walker.sprite.person, box, visible))
        return found


def _package_file(package: str, dist: str, locate: Callable[[ModuleType], Path], purpose: str) -> Path:
    try:
        module = import_module(package)
    except ImportError as err:
        raise PhotoMissing(f"{purpose} ships in {dist}, which is not installed: pip install -e '.[demo]' "
                           f"(sitewarden's demo extra brings it)") from err
    path = locate(module)
    if not path.is_file():
        raise PhotoMissing(f"{path} is missing from the installed {dist}; reinstall {dist}")
    return path


def _skimage_photo(filename: str) -> Path:
    return _package_file("skimage", "scikit-image", lambda m: Path(m.__file__).parent / "data" / filename,
                         f"the photo {filename}")


def _matplotlib_photo(filename: str) -> Path:
    return _package_file("matplotlib", "matplotlib",
                         lambda m: Path(m.get_data_path()) / "sample_data" / filename, f"the photo {filename}")


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise PhotoMissing(f"{path} could not be read as an image")
    return image


def _soft_alpha(height: int, width: int, feather_px: int) -> np.ndarray:
    """1 inside, ramping to 0 over `feather_px` at every edge, with rounded corners: less boxy than a rectangle."""
    if feather_px <= 0:
        return np.ones((height, width), np.float32)
    ys = np.minimum(np.arange(height), np.arange(height)[::-1]).astype(np.float32)
    xs = np.minimum(np.arange(width), np.arange(width)[::-1]).astype(np.float32)
    dy = np.clip(feather_px - ys, 0, None)[:, None]
    dx = np.clip(feather_px - xs, 0, None)[None, :]
    return np.clip(1.0 - np.hypot(dx, dy) / feather_px, 0.0, 1.0).astype(np.float32)


def _cardboard_box(height: int, width: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), np.float32)
    image[:] = (70, 120, 160)  # BGR cardboard brown
    image += cv2.GaussianBlur(rng.normal(0, 14, (height, width, 1)).astype(np.float32), (0, 0), 2)[..., None]
    image[:, :, :] += rng.normal(0, 4, (height, width, 3)).astype(np.float32)
    cv2.rectangle(image, (0, 0), (width - 1, height - 1), (45, 80, 110), 3)
    cv2.rectangle(image, (0, height // 2 - 8), (width - 1, height // 2 + 8), (150, 165, 175), -1)  # tape
    cv2.line(image, (width // 2, 0), (width // 2, height // 2 - 8), (40, 75, 105), 2)  # flap seam
    return np.clip(image, 0, 255).astype(np.uint8)


SPRITE_NAMES = ("grace", "cameraman", "cat", "box")


@cache
def sprite(name: str, height: int = PERSON_HEIGHT_PX, feather_px: int = 10) -> Sprite:
    """A sprite by name ("grace", "cameraman", "cat", "box"), `height` px tall with its aspect kept."""
    if name == "grace":
        image, person = _read(_matplotlib_photo("grace_hopper.jpg")), True
    elif name == "cameraman":
        image, person = _read(_skimage_photo("camera.png"))[:, :340], True  # the man, without most of the tripod
    elif name == "cat":
        image, person = _read(_skimage_photo("chelsea.png")), False
    elif name == "box":
        image, person = _cardboard_box(height, round(height * 1.3)), False
    else:
        raise ValueError(f"unknown sprite {name!r}; known: {', '.join(SPRITE_NAMES)}")
    width = round(image.shape[1] * height / image.shape[0])
    if image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return Sprite(name, person, image, _soft_alpha(height, width, feather_px))


def background(seed: int = 0) -> np.ndarray:
    """The empty door, BGR uint8: a textured wall, a brick dado, a floor, and the door's lintel and threshold
    seen edge-on at x = 320."""
    rng = np.random.default_rng(seed)
    image = np.empty((FRAME_H, FRAME_W, 3), np.float32)
    image[:] = (172, 186, 196)  # BGR warm grey wall
    image += cv2.GaussianBlur(rng.normal(0, 10, (FRAME_H, FRAME_W)).astype(np.float32), (0, 0), 6)[..., None]
    # a brick dado along the lower wall, 22 px courses in half-bond
    top, course, brick = 330, 22, 56
    for row, y in enumerate(range(top, 440, course)):
        shift = (brick // 2) * (row % 2)
        for x in range(-shift, FRAME_W, brick):
            shade = rng.normal(0, 12)
            cv2.rectangle(image, (x + 2, y + 2), (x + brick - 2, y + course - 2),
                          (70 + shade, 85 + shade, 150 + shade), -1)
    image[440:] = (120, 125, 128)  # floor
    image[440:] += rng.normal(0, 5, (FRAME_H - 440, FRAME_W, 1)).astype(np.float32)
    cv2.line(image, (0, 440), (FRAME_W - 1, 440), (90, 95, 98), 2)
    # the door seen edge-on: a lintel from the ceiling and a threshold plate on the floor
    cv2.rectangle(image, (DOOR_X - 14, 0), (DOOR_X + 14, 95), (60, 85, 110), -1)
    cv2.rectangle(image, (DOOR_X - 14, 0), (DOOR_X + 14, 95), (40, 60, 80), 2)
    cv2.rectangle(image, (DOOR_X - 18, 444), (DOOR_X + 18, FRAME_H - 1), (140, 160, 170), -1)
    return np.clip(image, 0, 255).astype(np.uint8)


def _paste(frame: np.ndarray, walker: Walker, k: int) -> None:
    box = walker.box(k)
    if box is None:
        return
    x1, y1, x2, y2 = box
    fx1, fy1, fx2, fy2 = max(x1, 0), max(y1, 0), min(x2, FRAME_W), min(y2, FRAME_H)
    if fx1 >= fx2 or fy1 >= fy2:
        return
    image, alpha = walker.sprite.image, walker.sprite.alpha
    if walker.mirrored(k):
        image, alpha = image[:, ::-1], alpha[:, ::-1]
    sx, sy = fx1 - x1, fy1 - y1
    src = image[sy:sy + fy2 - fy1, sx:sx + fx2 - fx1].astype(np.float32)
    a = alpha[sy:sy + fy2 - fy1, sx:sx + fx2 - fx1, None]
    dst = frame[fy1:fy2, fx1:fx2]
    frame[fy1:fy2, fx1:fx2] = src * a + dst * (1.0 - a)


def render_frame(scene: Scene, k: int, wall: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Frame `k` of the scene over `wall` (`background(scene.seed)` as float32), with sensor noise from `rng`."""
    frame = wall.copy()
    for walker in scene.walkers:
        _paste(frame, walker, k)
    frame += rng.standard_normal(frame.shape, dtype=np.float32) * NOISE_SIGMA
    return np.clip(frame, 0, 255).astype(np.uint8)


def render(scene: Scene) -> Iterator[np.ndarray]:
    """The scene's frames, BGR uint8 480x640x3; the same pixels every run (texture and noise are seeded)."""
    rng = np.random.default_rng(scene.seed + 1)
    wall = background(scene.seed).astype(np.float32)
    for k in range(scene.frames):
        yield render_frame(scene, k, wall, rng)


def write_video(scene: Scene, path: Path) -> Path:
    """Write the scene as motion JPEG in an AVI at the scene's fps; returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC), float(scene.fps), (FRAME_W, FRAME_H))
    if not writer.isOpened():
        raise RuntimeError(f"this OpenCV build cannot write {FOURCC} video to {path}")
    try:
        for frame in render(scene):
            writer.write(frame)
    finally:
        writer.release()
    return path


def _crossing_walk(sprite_: Sprite, start_frame: int, direction: Direction = "in",
                   speed_px_s: float = WALK_SPEED_PX_S, fps: int = FPS) -> tuple[tuple[int, float], ...]:
    """From just outside one edge of the frame to just outside the other."""
    off = sprite_.width / 2 + 4
    x0, x1 = (-off, FRAME_W + off) if direction == "in" else (FRAME_W + off, -off)
    frames = round(abs(x1 - x0) / speed_px_s * fps)
    return ((start_frame, x0), (start_frame + frames, x1))


def _scene(name: str, walkers: list[Walker], seed: int = 0) -> Scene:
    last = max(w.waypoints[-1][0] for w in walkers)
    return Scene(name, last + 1 + TAIL_FRAMES, tuple(walkers), seed=seed)


def one_person_in() -> Scene:
    """Grace Hopper walks in from the left and out of the picture on the right: 1 entered."""
    grace = sprite("grace")
    return _scene("one_person_in", [Walker(grace, _crossing_walk(grace, LEAD_IN_FRAMES))])


def one_person_out() -> Scene:
    """The cameraman walks out, right to left: 1 exited."""
    man = sprite("cameraman")
    return _scene("one_person_out", [Walker(man, _crossing_walk(man, LEAD_IN_FRAMES, "out"))], seed=1)


def _two_in_a_row(name: str, gap_s: float, seed: int) -> Scene:
    grace, man = sprite("grace"), sprite("cameraman")
    gap = round(gap_s * FPS)
    return _scene(name, [Walker(grace, _crossing_walk(grace, LEAD_IN_FRAMES)),
                         Walker(man, _crossing_walk(man, LEAD_IN_FRAMES + gap))], seed=seed)


def two_people_close() -> Scene:
    """Tailgating: the cameraman follows Grace Hopper in, 0.8 s behind (boxes overlap IoU <= 0.3): 2 entered."""
    return _two_in_a_row("two_people_close", 0.8, seed=2)


def two_people_apart() -> Scene:
    """Two people enter one after the other, 4 s apart (one badge grant each): 2 entered."""
    return _two_in_a_row("two_people_apart", 4.0, seed=3)


def in_then_out() -> Scene:
    """Grace Hopper walks in, stops 1 s well inside, turns round and walks back out: 1 entered, 1 exited."""
    grace = sprite("grace")
    (k0, x0), _ = _crossing_walk(grace, LEAD_IN_FRAMES)
    turn_x = DOOR_X + 150.0
    k1 = k0 + round((turn_x - x0) / WALK_SPEED_PX_S * FPS)
    k2 = k1 + FPS
    k3 = k2 + (k1 - k0)
    return _scene("in_then_out", [Walker(grace, ((k0, x0), (k1, turn_x), (k2, turn_x), (k3, x0)))], seed=4)


def cat_walks_by() -> Scene:
    """The cat crosses the door low down: motion, no person, 0 entered."""
    cat = sprite("cat", height=150)
    return _scene("cat_walks_by", [Walker(cat, _crossing_walk(cat, LEAD_IN_FRAMES, speed_px_s=200.0))], seed=5)


def box_slides() -> Scene:
    """A cardboard box slides across the floor through the door: motion, no person, 0 entered."""
    box = sprite("box", height=120)
    return _scene("box_slides", [Walker(box, _crossing_walk(box, LEAD_IN_FRAMES, speed_px_s=180.0))], seed=6)


def empty_door(seconds: float = 3.0) -> Scene:
    """Nobody: the idle door with sensor noise only."""
    return Scene("empty_door", round(seconds * FPS), (), seed=7)


SCENES: dict[str, Callable[[], Scene]] = {
    "one_person_in": one_person_in,
    "one_person_out": one_person_out,
    "two_people_close": two_people_close,
    "two_people_apart": two_people_apart,
    "in_then_out": in_then_out,
    "cat_walks_by": cat_walks_by,
    "box_slides": box_slides,
    "empty_door": empty_door,
}
