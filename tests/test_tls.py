"""Forwarding to a central broker that wants TLS and a password, as a real console's does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SITE, query, wait_online, wait_until, write_config

from edge import topics
from edge.brokers import MosquittoBroker
from edge.events import DoorOpened, dump_event


def _pki(tmp_path: Path) -> dict[str, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1, made with openssl."""
    d = tmp_path / "pki"
    d.mkdir()
    run = lambda *args: subprocess.run(args, check=True, capture_output=True, cwd=d)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=SiteWarden test CA")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    return {"ca": d / "ca.pem", "cert": d / "server.pem", "key": d / "server.key"}


@pytest.fixture
def tls_central_broker(tmp_path: Path):
    """mosquitto with TLS and a password file: accounts `site` and `console`."""
    pki = _pki(tmp_path)
    passwords = tmp_path / "mosquitto.passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwords), "site-test", "right-password"], check=True)
    subprocess.run(["mosquitto_passwd", "-b", str(passwords), "console", "console-password"], check=True)
    extra = (f"allow_anonymous false\npassword_file {passwords}\ncafile {pki['ca']}\ncertfile {pki['cert']}\n"
             f"keyfile {pki['key']}\nlog_type notice\n")
    broker = MosquittoBroker(tmp_path / "tls-broker", extra_conf=extra)
    yield broker, pki["ca"]
    broker.stop()


def _secret(tmp_path: Path, name: str, value: str) -> Path:
    path = tmp_path / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def test_alerts_forward_over_tls_with_credentials(tmp_path: Path, mqtt_broker, tls_central_broker,
                                                  service_factory, client_factory) -> None:
    central, ca = tls_central_broker
    site_pw = _secret(tmp_path, "site.password", "right-password")
    console_pw = _secret(tmp_path, "console.password", "console-password")
    config = write_config(
        tmp_path / "config.yaml", tmp_path / "data", mqtt_broker.port, central.port,
        forwarder={"broker": {"host": "127.0.0.1", "port": central.port, "username": "site-test",
                              "password_file": str(site_pw), "tls": {"ca_file": str(ca)}}},
        console={"broker": {"host": "127.0.0.1", "port": central.port, "username": "console",
                            "password_file": str(console_pw), "tls": {"ca_file": str(ca)}}},
    )
    service_factory(config, "console")
    service_factory(config, "edge")
    device = client_factory(mqtt_broker.port)
    device.publish(topics.fact_topic(SITE, "badge", "ctl-1", "door_opened"),
                   dump_event(DoorOpened(site=SITE, source="badge/ctl-1", door="front")))
    wait_until(lambda: query(tmp_path / "data" / "console.db", "SELECT kind FROM alerts") == [("door_forced_open",)],
               15, "the alert at the console over TLS")
    wait_until(lambda: query(tmp_path / "data" / "edge.db", "SELECT count(*) FROM outbox") == [(0,)], 10,
               "the confirmation back over TLS")


def test_wrong_central_password_is_logged_once_and_alerts_wait_in_the_outbox(
        tmp_path: Path, mqtt_broker, tls_central_broker, client_factory) -> None:
    central, ca = tls_central_broker
    wrong = _secret(tmp_path, "site.password", "wrong-password")
    config = write_config(
        tmp_path / "config.yaml", tmp_path / "data", mqtt_broker.port, central.port,
        forwarder={"broker": {"host": "127.0.0.1", "port": central.port, "username": "site-test",
                              "password_file": str(wrong), "tls": {"ca_file": str(ca)}}},
    )
    log = tmp_path / "edge.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "--config", str(config), "run", "edge"],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: f"connected to broker 127.0.0.1:{mqtt_broker.port}" in log.read_text(), 15,
                   "the edge on its local broker")
        wait_online(config, "edge")
        device = client_factory(mqtt_broker.port)
        device.publish(topics.fact_topic(SITE, "badge", "ctl-1", "door_opened"),
                       dump_event(DoorOpened(site=SITE, source="badge/ctl-1", door="front")))
        wait_until(lambda: query(tmp_path / "data" / "edge.db", "SELECT count(*) FROM outbox") == [(1,)], 10,
                   "the alert to wait in the outbox")
        wait_until(lambda: log.read_text().count("refused connection") >= 1, 15, "the refusal in the log")
        wait_until(lambda: _refusals_at_broker(tmp_path) >= 3, 20, "the edge to keep retrying")
        assert log.read_text().count("refused connection") == 1, log.read_text()
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(10)


def _refusals_at_broker(tmp_path: Path) -> int:
    broker_log = next((tmp_path / "tls-broker").glob("mosquitto-*.log"), None)
    return broker_log.read_text().count("not authorised") if broker_log else 0
