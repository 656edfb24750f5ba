"""A camera whose source is a video file that ends (not looping): reported as ended, with no high
device_offline alert from the edge, while a device that really goes away still raises one."""

from __future__ import annotations

from conftest import SITE, wait_until, write_config

from edge import topics
from edge.events import DeviceWentOffline, dump_event
from vision import scenes


def test_a_video_file_that_ends_is_reported_ended_and_raises_no_offline_alert(
        tmp_path, mqtt_broker, client_factory, service_factory) -> None:
    video = scenes.write_video(scenes.SCENES["empty_door"](1.0), tmp_path / "short.avi")
    cam = {"url": str(video), "door": "front", "line": [[0.5, 0.0], [0.5, 1.0]], "inside": "left"}
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", mqtt_broker.port, None,
                          vision={"cameras": {"cam-front": cam}})
    watcher = client_factory(mqtt_broker.port)
    watcher.subscribe(topics.facts_filter(SITE))
    watcher.subscribe(topics.alerts_filter(SITE))
    service_factory(config, "edge")
    vision = service_factory(config, "vision")

    def offline_facts() -> list[dict]:
        return [p for p in watcher.payloads(f"sitewarden/{SITE}/vision/") if p["kind"] == "device_went_offline"]

    (fact,) = wait_until(offline_facts, 30, "the camera's end of file reported")
    assert (fact["device_id"], fact["reason"], fact["ended"]) == ("vision/cam-front", "end of file", True)
    # A reader that really goes away, reported after the file's end: once its alert is out, the edge has
    # judged the file's end too (one subscription, in order).
    lost = DeviceWentOffline(site=SITE, source="badge/controller-1", device_id="badge/reader-9",
                             device_type="reader", reason="no poll reply")
    client_factory(mqtt_broker.port).publish(
        topics.fact_topic(SITE, "badge", "controller-1", "device_went_offline"), dump_event(lost))

    def offline_alerts() -> list[dict]:
        return [m["alert"] for m in watcher.payloads(f"sitewarden/{SITE}/alert/")
                if m["alert"]["kind"] == "device_offline"]

    wait_until(lambda: any(a["device"] == "badge/reader-9" for a in offline_alerts()), 15, "the reader's alert")
    assert {(a["device"], a["severity"]) for a in offline_alerts()} == {("badge/reader-9", "high")}
    assert f"camera {video} ended: end of file" in vision.output()
