"""`sitewarden vision ...`: set-up help for cameras."""

from __future__ import annotations

from pathlib import Path

import click
import cv2

from edge.config import load_settings


@click.group("vision")
def vision() -> None:
    """Cameras and door lines.

    Example: sitewarden vision snapshot cam-lobby --out lobby.png
    """


@vision.command("snapshot")
@click.argument("camera")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PNG file to write; default `<camera>-setup.png` in the current directory.")
@click.pass_context
def snapshot(ctx: click.Context, camera: str, out: Path | None) -> None:
    """Grab a live frame from a configured camera and draw its door line, inside side and region of interest.

    Example: sitewarden vision snapshot cam-lobby --out lobby.png
    """
    from vision.camera import snapshot_frame
    from vision.doorline import DoorLine

    settings = load_settings(ctx.obj.get("config") if ctx.obj else None)
    cams = settings.vision.cameras
    if camera not in cams:
        raise click.ClickException(f"no camera {camera!r} in vision.cameras (configured: "
                                   f"{', '.join(cams) or 'none'})")
    cam = cams[camera]
    try:
        image = snapshot_frame(cam.url)
    except RuntimeError as err:
        raise click.ClickException(f"vision.cameras.{camera}.url: {err}") from None
    h, w = image.shape[:2]
    line = DoorLine.from_fractions(cam.line[0], cam.line[1], cam.inside, w, h, band=cam.band_px)
    p1, p2 = (int(line.p1[0]), int(line.p1[1])), (int(line.p2[0]), int(line.p2[1]))
    cv2.arrowedLine(image, p1, p2, (0, 255, 255), 2, tipLength=0.03)
    # Mark the inside: a short arrow from the line's middle towards the inside.
    mx, my = (p1[0] + p2[0]) / 2, (p1[1] + p2[1]) / 2
    dx, dy = p2[0] - p1[0], p2[1] - p1[1]
    norm = max(1.0, (dx * dx + dy * dy) ** 0.5)
    nx, ny = (dy / norm, -dx / norm) if cam.inside == "left" else (-dy / norm, dx / norm)
    tip = (int(mx + nx * 60), int(my + ny * 60))
    cv2.arrowedLine(image, (int(mx), int(my)), tip, (0, 200, 0), 2)
    cv2.putText(image, "inside", (tip[0] + 4, tip[1]), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 200, 0), 2)
    if cam.roi is not None:
        x1, y1, x2, y2 = cam.roi
        cv2.rectangle(image, (int(x1 * w), int(y1 * h)), (int(x2 * w), int(y2 * h)), (255, 128, 0), 2)
    out = out or Path(f"{camera}-setup.png")
    if not cv2.imwrite(str(out), image):
        raise click.ClickException(f"cannot write {out}")
    click.echo(f"{camera}: {w}x{h} frame with the door line (yellow, p1 -> p2), inside (green) and region of "
               f"interest (blue) written to {out}")
