"""`sitewarden run vision`: each camera in its own thread, counting people across its door line.

Crossings become PersonEntered / PersonExited facts (stored, then published); a camera's frames stopping and
starting become DeviceWentOffline / DeviceCameOnline; a video file that ends without looping goes offline
with `ended` set, a state rather than a fault. A failing camera or detector never stops the others.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from edge.config import Settings
from edge.config_vision import CameraSettings
from edge.events import DeviceCameOnline, DeviceWentOffline, Event, PersonEntered, PersonExited, utcnow
from edge.producer import FactProducer
from edge.services import ServiceCannotStart, ServiceSpec
from vision.camera import Camera
from vision.commands import vision as vision_commands
from vision.detector import DecodeParams, PersonDetector
from vision.doorline import describe_inside
from vision.models import MODELS, ModelError, sha256, verified
from vision.pipeline import Counted, DoorWatch, annotate, prune_snapshots, save_snapshot

logger = logging.getLogger(__name__)

SERVICE_NAME = "vision"
PRUNE_EVERY_S = 600.0


def resolve_model(settings: Settings) -> tuple[Path, DecodeParams]:
    """The configured model's file, checked, and how to decode it: a known name from the cache, or a site's
    own file with its sha256."""
    vision = settings.vision
    if vision.model in MODELS:
        path = verified(vision.model)
        params = MODELS[vision.model].params
    else:
        path = Path(vision.model)
        if not path.is_file():
            raise ModelError(f"vision.model: {vision.model!r} is neither a known model ({', '.join(MODELS)}) nor a "
                             "file")
        if vision.model_sha256 and sha256(path.read_bytes()) != vision.model_sha256:
            raise ModelError(f"vision.model: {path} does not match vision.model_sha256")
        params = DecodeParams("postprocess", person_class=vision.person_class, threshold=0.5)
    if vision.threshold is not None:
        params = replace(params, threshold=vision.threshold)
    return path, params


class VisionService:
    """The cameras, their counting threads, and the way out for facts."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.vision = settings.vision
        self.site = settings.site.id
        self.snapshot_dir = self.vision.snapshot_dir or settings.data_dir / "vision" / "snapshots"
        self.producer = FactProducer(settings, SERVICE_NAME)
        self.watches: dict[str, DoorWatch] = {}
        self.cameras: dict[str, Camera] = {}
        self.errors = 0

    def publish(self, *facts: Event) -> None:
        """Store, then publish."""
        self.producer.publish(*facts)

    def _camera_state(self, cam_id: str, online: bool, reason: str) -> None:
        source = f"{SERVICE_NAME}/{cam_id}"  # the camera is both the fact's source and the device it is about
        if online:
            self.publish(DeviceCameOnline(site=self.site, source=source, device_id=source, device_type="camera"))
        else:
            camera = self.cameras.get(cam_id)
            self.publish(DeviceWentOffline(site=self.site, source=source, device_id=source, device_type="camera",
                                           reason=reason, ended=camera is not None and camera.ended))

    def _fact_of(self, cam_id: str, cam: CameraSettings, watch: DoorWatch, counted: Counted) -> Event:
        source = f"{SERVICE_NAME}/{cam_id}"
        crossing = counted.crossing
        # When the frame was read, not when this fact is built (after detection and the JPEG write).
        when = utcnow() - timedelta(seconds=max(0.0, time.monotonic() - crossing.t))
        if crossing.direction == "out":
            return PersonExited(site=self.site, source=source, door=cam.door, camera=cam_id,
                                track_id=crossing.track_id, occurred_at=when)
        snapshot = None
        if self.vision.snapshots and watch.line is not None:
            try:
                path = save_snapshot(annotate(counted, watch.line, self.vision.blur_people), self.snapshot_dir,
                                     cam_id, crossing.track_id)
                snapshot = str(path.relative_to(self.settings.data_dir)) if path.is_relative_to(
                    self.settings.data_dir) else str(path)
            except Exception as err:  # evidence lost is bad; the entry lost would be worse
                self.errors += 1
                logger.error("camera %s: snapshot not saved: %s", cam_id, err)
        return PersonEntered(site=self.site, source=source, door=cam.door, camera=cam_id,
                             track_id=crossing.track_id, snapshot=snapshot, occurred_at=when)

    def _watch_camera(self, cam_id: str, cam: CameraSettings, detector: PersonDetector,
                      stop: threading.Event) -> None:
        watch = DoorWatch(cam, self.vision, detector)
        self.watches[cam_id] = watch
        camera = Camera(cam.url, loop=cam.loop, width=cam.width, rotate=cam.rotate,
                        reconnect_min_s=self.vision.reconnect_min_s, reconnect_max_s=self.vision.reconnect_max_s,
                        offline_after_s=self.vision.offline_after_s,
                        on_state=lambda online, reason: self._camera_state(cam_id, online, reason))
        self.cameras[cam_id] = camera
        camera.start()
        seq, period = -1, 1.0 / cam.fps
        next_at = time.monotonic()
        try:
            while not stop.is_set():
                frame = camera.latest(after_seq=seq, timeout=0.5)
                if frame is None:
                    continue
                seq = frame.seq
                try:
                    counted = watch.process(frame.image, frame.t)
                    if counted:
                        self.publish(*[self._fact_of(cam_id, cam, watch, c) for c in counted])
                except Exception:  # one bad frame must not stop the door's watch
                    self.errors += 1
                    logger.exception("camera %s: frame %d failed; going on", cam_id, frame.seq)
                next_at += period
                delay = next_at - time.monotonic()
                if delay > 0:
                    stop.wait(delay)
                else:
                    next_at = time.monotonic()
        finally:
            camera.stop()

    def run(self, stop: threading.Event) -> None:
        """Run every camera until `stop` is set."""
        logger.info("vision service: %d cameras, model %s", len(self.vision.cameras), self.vision.model)
        for cam_id, cam in self.vision.cameras.items():
            logger.info("camera %s (door %s): %s", cam_id, cam.door, describe_inside(cam.line[0], cam.line[1],
                                                                                  cam.inside))
        detectors: dict[str, PersonDetector] = {}
        if self.vision.cameras:
            # One interpreter per camera thread (they are not thread-safe), all from one checked file; a missing
            # or wrong model stops the start, saying what to do.
            try:
                path, params = resolve_model(self.settings)
                for cam_id in self.vision.cameras:
                    detectors[cam_id] = PersonDetector(path, params, threads=self.vision.threads,
                                                       normalize_contrast=self.vision.normalize_contrast)
            except (ModelError, ValueError, RuntimeError, ImportError) as err:
                raise ServiceCannotStart(f"vision.model: {err}") from err
        self.producer.start()
        threads = [threading.Thread(target=self._watch_camera, args=(cam_id, cam, detectors[cam_id], stop),
                                    name=f"vision-{cam_id}", daemon=True)
                   for cam_id, cam in self.vision.cameras.items()]
        for thread in threads:
            thread.start()
        try:
            last_prune = 0.0
            while not stop.wait(1.0):
                if time.monotonic() - last_prune > PRUNE_EVERY_S and self.snapshot_dir.is_dir():
                    last_prune = time.monotonic()
                    try:
                        removed = prune_snapshots(self.snapshot_dir, self.vision.snapshot_retention_days * 86400,
                                                  self.vision.snapshot_max_mb * 1e6)
                    except OSError as err:
                        logger.error("vision: pruning snapshots in %s failed: %s", self.snapshot_dir, err)
                        continue
                    if removed:
                        logger.info("vision: %d old snapshots deleted", removed)
        finally:
            for thread in threads:
                thread.join(5)
            self.producer.stop()


def run(settings: Settings, stop: threading.Event) -> None:
    """Entry point of `sitewarden run vision`."""
    VisionService(settings).run(stop)


def _demo_settings(data_dir: Path) -> dict[str, object]:
    from vision.demo import demo_settings

    return demo_settings(data_dir)


def _simulate(settings: Settings, stop: threading.Event) -> None:
    from vision.demo import run_demo_camera

    run_demo_camera(settings, stop)


SERVICE = ServiceSpec(
    name=SERVICE_NAME,
    summary="camera tailgating detection: people counted across door lines, held against badge grants",
    run=run,
    simulate=_simulate,
    demo_settings=_demo_settings,
    commands=vision_commands,
)
