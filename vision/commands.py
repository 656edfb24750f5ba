"""`sitewarden vision ...`: set-up help for cameras, and counting a video file offline."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
import cv2

from edge.config import Settings, load_settings
from edge.config_vision import CameraSettings


@click.group("vision")
def vision() -> None:
    """Cameras and door lines.

    Example: sitewarden vision snapshot cam-lobby --out lobby.png
    """


def _camera(ctx: click.Context, camera: str, config: Path | None = None) -> tuple[Settings, CameraSettings]:
    """The settings and one configured camera; an unknown camera is one clear line (a missing or broken config
    is answered by the CLI's group, as for every command)."""
    settings = load_settings(config or (ctx.obj.get("config") if ctx.obj else None))
    cams = settings.vision.cameras
    if camera not in cams:
        raise click.ClickException(f"no camera {camera!r} in vision.cameras (configured: "
                                   f"{', '.join(cams) or 'none'})")
    return settings, cams[camera]


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
    from vision.doorline import DoorLine, describe_inside
    from vision.overlay import draw_door

    _, cam = _camera(ctx, camera)
    try:
        image = snapshot_frame(cam.url)
    except RuntimeError as err:
        raise click.ClickException(f"vision.cameras.{camera}.url: {err}") from None
    h, w = image.shape[:2]
    line = DoorLine.from_fractions(cam.line[0], cam.line[1], cam.inside, w, h, band=cam.band_px)
    draw_door(image, line)
    if cam.roi is not None:
        x1, y1, x2, y2 = cam.roi
        cv2.rectangle(image, (int(x1 * w), int(y1 * h)), (int(x2 * w), int(y2 * h)), (255, 128, 0), 2)
    out = out or Path(f"{camera}-setup.png")
    if not cv2.imwrite(str(out), image):
        raise click.ClickException(f"cannot write {out}")
    click.echo(f"{camera}: {w}x{h} frame with the door line (yellow, p1 -> p2), inside (shaded green) and region "
               f"of interest (blue) written to {out}")
    click.echo(f"{camera}: {describe_inside(cam.line[0], cam.line[1], cam.inside)}")


@vision.command("replay")
@click.argument("video", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--camera", "camera", required=True, help="Camera id in vision.cameras whose door line, inside, "
              "rotation and region the video is counted with.")
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Config file (default: sitewarden's own --config or SITEWARDEN_CONFIG).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the crossing snapshots; default a new folder under the system's temp directory.")
@click.pass_context
def replay(ctx: click.Context, video: Path, camera: str, config: Path | None, out: Path | None) -> None:
    """Count a video file offline as a camera would, without a broker or any stored fact.

    The file goes as fast as it decodes through the camera's pipeline (motion gate, detector, tracker, door
    line); each crossing is printed with its time in the video, in or out, its track and its snapshot, then
    the totals.

    Example: sitewarden --config config.yaml vision replay lobby.mp4 --camera cam-lobby --out /tmp/lobby
    """
    from vision.detector import PersonDetector
    from vision.doorline import describe_inside
    from vision.models import ModelError
    from vision.replay import ReplayedCrossing, VideoUnreadable, check_video, video_clock
    from vision.replay import replay as run_replay
    from vision.service import resolve_model

    settings, cam = _camera(ctx, camera, config)
    try:
        check_video(video)
    except VideoUnreadable as err:
        raise click.ClickException(f"cannot replay {err}") from None
    try:
        path, params = resolve_model(settings)
        detector = PersonDetector(path, params, threads=settings.vision.threads,
                                  normalize_contrast=settings.vision.normalize_contrast)
    except (ModelError, ValueError, RuntimeError, ImportError) as err:
        raise click.ClickException(f"vision.model: {err}") from None
    out = out or Path(tempfile.mkdtemp(prefix=f"sitewarden-replay-{camera}-"))
    click.echo(f"{camera}: {describe_inside(cam.line[0], cam.line[1], cam.inside)}")
    click.echo(f"{camera}: snapshots go to {out}")

    def show(crossing: ReplayedCrossing) -> None:
        click.echo(f"{video_clock(crossing.video_s)}  {crossing.direction:<3}  track #{crossing.track_id}  "
                   f"{crossing.snapshot}")

    try:
        totals = run_replay(video, camera, cam, settings.vision, detector, out, on_crossing=show)
    except VideoUnreadable as err:
        raise click.ClickException(f"cannot replay {err}") from None
    except OSError as err:
        raise click.ClickException(f"cannot write snapshots to {out}: {err}") from None
    click.echo(f"{camera}: {totals.entered} in, {totals.exited} out in {totals.frames} frames "
               f"({totals.video_s:.1f} s of video; {totals.processed} counted, detector ran {totals.detector_runs} "
               f"times); snapshots in {out}")
