"""The demo's camera: a generated door video at the badge demo's front door.

The badge simulator lets Alice in at the front door 3 s after the demo starts; this video shows the empty door
for a few seconds, then Alice with someone right behind her (two people on one grant), then the empty door
again for half a minute before it loops. The first pass raises a tailgating alert with its snapshot; each
later pass, with no grant, an unauthorized entry (folded into one alert per door).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from vision import scenes

DOOR = "front"  # firmware_bridge.demo.FRONT; vision imports nothing of the badge service
LEAD_S, TAIL_S = 2.0, 30.0


def demo_video(data_dir: Path) -> Path:
    """Write (once) the demo's door video under the data directory."""
    path = data_dir / "vision" / "demo-door.avi"
    if path.is_file():
        return path
    base = scenes.SCENES["two_people_close"]()
    lead, tail = round(LEAD_S * base.fps), round(TAIL_S * base.fps)
    walkers = tuple(replace(w, waypoints=tuple((k + lead, x) for k, x in w.waypoints)) for w in base.walkers)
    scene = replace(base, name="demo", frames=base.frames + lead + tail, walkers=walkers)
    path.parent.mkdir(parents=True, exist_ok=True)
    return scenes.write_video(scene, path)


def demo_settings(data_dir: Path) -> dict[str, Any]:
    """The `vision` section the demo runs with: one camera playing the door video in a loop."""
    return {
        "cameras": {
            "cam-front": {"url": str(demo_video(data_dir)), "loop": True, "door": DOOR,
                          "line": [[scenes.DOOR_X / scenes.FRAME_W, 0.0], [scenes.DOOR_X / scenes.FRAME_W, 1.0]],
                          # A point in the room, x > DOOR_X (what scenes.DOOR_INSIDE "left" means for this line).
                          "inside": [(scenes.DOOR_X + scenes.FRAME_W) / 2 / scenes.FRAME_W, 0.5]},
        },
    }
