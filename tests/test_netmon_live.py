"""netmon live: frames sent into a veth pair whose far end lives in a network namespace the test makes, captured
at the near end by `sitewarden run netmon` through its kernel filter, published as facts (with evidence) and
as the edge's alerts; capture counters on the status topic; a source that goes down and comes back."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import SITE, wait_until, write_config
from scapy.layers.dot11 import Dot11
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import rdpcap

from edge import topics
from edge.config import load_settings
from netmon import scenarios as sc
from netmon.lab import VethLab, send
from netmon.packets import DLT_IEEE802_11_RADIO
from netmon.service import NetmonService


@pytest.fixture
def lab() -> Iterator[VethLab]:
    if os.geteuid() != 0:
        pytest.fail("the live netmon tests make a network namespace and a veth pair: run them as root "
                    "(`make test` in CI does)")
    with VethLab() as made:
        yield made


def netmon_config(tmp_path: Path, port: int, **netmon: Any) -> Path:
    path = write_config(tmp_path / "config.yaml", tmp_path / "data", port, None)
    config = yaml.safe_load(path.read_text())
    config["netmon"] = {**sc.SETTINGS, "lan": {**sc.SETTINGS["lan"], "known_stations": sc.KNOWN},
                        "stats_interval_s": 0.3, **netmon}
    path.write_text(yaml.safe_dump(config))
    return path


def stats_of(watcher) -> dict[str, Any] | None:
    found = watcher.payloads(topics.stats_topic(SITE, "netmon"))
    return found[-1] if found else None


def test_the_service_captures_live_behind_its_filter_and_publishes_findings_with_evidence(
        tmp_path, lab, mqtt_broker, client_factory, service_factory) -> None:
    config = netmon_config(tmp_path, mqtt_broker.port, interface=lab.capture)
    watcher = client_factory(mqtt_broker.port)
    watcher.subscribe(topics.facts_filter(SITE))
    watcher.subscribe(topics.alerts_filter(SITE))
    watcher.subscribe(topics.stats_topic(SITE, "netmon"))
    service_factory(config, "edge")
    netmon = service_factory(config, "netmon")
    tx = lab.sender()
    truncated_arp = bytes(sc.arp("02:00:00:00:00:14", "10.0.0.20", sc.GATEWAY_IP))[:24]
    wanted = [
        truncated_arp,  # passes the filter (it is ARP), malformed: counted, skipped, nothing stops
        bytes(sc.arp(sc.GATEWAY_MAC, sc.GATEWAY_IP, "10.0.0.20")),
        bytes(sc.arp(sc.ATTACKER, sc.GATEWAY_IP, "10.0.0.20", op=2, dst_mac="02:00:00:00:00:14")),  # poisoning
        bytes(sc.discover(sc.NEW_LAPTOP)),
        bytes(sc.dhcp_reply("02:00:00:00:00:66", "10.0.0.66", "10.0.0.51", sc.NEW_LAPTOP)),
        bytes(sc.routed("10.20.0.9", "93.184.216.34") / TCP(sport=51000, dport=443, flags="S")),  # VPN bypass
        bytes(sc.routed("10.20.0.11", "203.0.113.90") / UDP(sport=41000, dport=51820) / Raw(sc.wireguard(1, 148))),
    ]
    # what no detector needs: web traffic of hosts outside the agent subnets, IPv6, other ethertypes
    noise = [bytes(sc.routed("10.0.0.20", "93.184.216.34", mac="02:00:00:00:00:14") / TCP(sport=50000 + k, dport=443)
                   / Raw(b"GET / HTTP/1.1\r\n\r\n")) for k in range(300)]
    noise += [bytes(Ether(src="02:00:00:00:00:14", dst="02:00:00:00:00:01") / IPv6(src="fd00::14", dst="fd00::1")
                    / UDP(sport=5000, dport=53)) for _ in range(50)]
    noise += [bytes(Ether(src="02:00:00:00:00:14", dst="01:80:c2:00:00:0e", type=0x88CC) / Raw(bytes(40)))] * 20
    frames = noise[:150] + wanted + noise[150:]
    assert send(tx, frames)[0] == len(frames)
    prefix = f"sitewarden/{SITE}/netmon/"

    def kinds() -> list[str]:
        return sorted(p["kind"] for p in watcher.payloads(prefix))

    expected = sorted(["arp_spoofing_seen", "personal_vpn_seen", "rogue_dhcp_server_seen", "station_seen",
                       "station_seen", "vpn_bypass_seen"])  # stations: the laptop and the attacker
    wait_until(lambda: kinds() == expected, 15, f"the facts {expected} (have {kinds()})")
    facts = {p["kind"]: p for p in watcher.payloads(prefix)}
    bypass = facts["vpn_bypass_seen"]
    assert bypass["source"] == f"netmon/{lab.capture}" and bypass["interface"] == lab.capture
    assert bypass["agent_ip"] == "10.20.0.9" and bypass["destination"] == "93.184.216.34:443/tcp"
    assert bypass["signature"] == "VPNBYPASS" and "93.184.216.34" in bypass["packets"][0]
    snippet = rdpcap(str(tmp_path / "data" / bypass["evidence"]))
    assert len(snippet) == 1 and snippet[0][IP].dst == "93.184.216.34" and TCP in snippet[0]
    assert facts["arp_spoofing_seen"]["reason"] == "protected address"
    assert facts["personal_vpn_seen"]["protocol"] == "wireguard"

    # The counters: only the wanted frames reached Python (the kernel filter held the other 370), none dropped.
    def settled() -> dict[str, Any] | None:
        stats = stats_of(watcher)
        return stats if stats and stats["received"] == len(wanted) and stats["malformed"] == 1 else None

    stats = wait_until(settled, 10, f"stats with {len(wanted)} frames received")
    source = stats["sources"][lab.capture]
    assert source["received"] == len(wanted) and source["kernel_received"] == len(wanted)
    assert source["kernel_dropped"] == 0 and source["open"] and "net 10.20.0.0/16" in source["filter"]
    assert source["receive_buffer_bytes"] == 64 * 1024 * 1024
    assert stats["parsed"] == len(wanted) - 1 and stats["malformed_reasons"] == {"arp_short": 1}
    assert lab.interface_counters()["rx_packets"] >= len(frames)

    alerts = wait_until(lambda: {m["alert"]["kind"] for m in watcher.payloads(f"sitewarden/{SITE}/alert/")}
                        >= {"vpn_bypass", "rogue_dhcp", "arp_spoofing", "personal_vpn", "unknown_device"}, 15,
                        "the edge's alerts")
    assert alerts

    # The interface goes down and comes back: the service says so, captures again, and finds the next thing.
    def source_state() -> dict[str, Any]:
        return (stats_of(watcher) or {"sources": {lab.capture: {}}})["sources"][lab.capture]

    subprocess.run(["ip", "link", "set", lab.capture, "down"], check=True)
    wait_until(lambda: source_state().get("open") is False and source_state()["read_errors"] == 1, 10,
               "the source closed after its interface went down")
    subprocess.run(["ip", "link", "set", lab.capture, "up"], check=True)
    wait_until(lambda: source_state().get("open") and source_state()["reopened"] == 1, 10,
               "the source reopened after its interface came back")
    assert netmon.output().count("capture failed") == 1  # the loss logged once, not once per retry
    tx.close()
    tx = lab.sender()
    send(tx, [bytes(sc.routed("10.20.0.12", "93.184.216.34") / TCP(sport=52000, dport=443, flags="S"))])
    wait_until(lambda: any(p.get("agent_ip") == "10.20.0.12" for p in watcher.payloads(prefix)), 15,
               "the bypass after the interface came back")
    netmon.stop()
    assert "Traceback" not in netmon.output()


def test_a_monitor_mode_source_reads_radiotap_behind_its_filter(tmp_path, lab, mqtt_broker, client_factory) -> None:
    """This machine has no Wi-Fi radio and no mac80211_hwsim, so nothing can be put in monitor mode: radiotap
    frames are carried over the veth pair instead and the service is told their link type (the one stand-in
    here). The socket, the kernel's 802.11 filter, the parser and the detectors are the real ones."""
    config = netmon_config(tmp_path, mqtt_broker.port, monitor_interface=lab.capture)
    watcher = client_factory(mqtt_broker.port)
    watcher.subscribe(topics.facts_filter(SITE))
    watcher.subscribe(topics.stats_topic(SITE, "netmon"))
    service = NetmonService(load_settings(config), linktypes={lab.capture: DLT_IEEE802_11_RADIO})
    stop = threading.Event()
    runner = threading.Thread(target=service.run, args=(stop,), daemon=True)
    runner.start()
    try:
        wait_until(lambda: service.producer.bus.connected.is_set() and service.sources, 10, "netmon running")
        tx = lab.sender()
        site = [bytes(sc.beacon(sc.AP1, sc.CORP_SSID, 1, "wpa3")) for _ in range(20)]
        twin = [bytes(sc.beacon(sc.EVIL, sc.CORP_SSID, 11, "open")) for _ in range(5)]
        flood = [bytes(sc.deauth(sc.AP1, "ff:ff:ff:ff:ff:ff")) for _ in range(40)]
        data = [bytes(sc._radiotap(2412) / Dot11(type=2, addr1="02:00:00:00:00:01", addr2="02:00:00:00:00:02",
                                                 addr3=sc.AP1) / Raw(bytes(100))) for _ in range(200)]
        send(tx, data[:100] + site + twin + data[100:] + flood)
        prefix = f"sitewarden/{SITE}/netmon/"
        wait_until(lambda: {p["kind"] for p in watcher.payloads(prefix)} == {"rogue_access_point_seen",
                                                                            "deauth_flood_seen"}, 15,
                   "the evil twin and the flood")
        twin_fact = next(p for p in watcher.payloads(prefix) if p["kind"] == "rogue_access_point_seen")
        assert twin_fact["bssid"] == sc.EVIL and twin_fact["security"] == "open" and twin_fact["channel"] == 11
        flood_fact = next(p for p in watcher.payloads(prefix) if p["kind"] == "deauth_flood_seen")
        assert flood_fact["broadcast"] and flood_fact["frames"] == 30 and flood_fact["signature"] == "BCASTDISCON"
        snippet = rdpcap(str(tmp_path / "data" / flood_fact["evidence"]))
        assert len(snippet) == 8 and all(p.haslayer(Dot11) and p[Dot11].subtype == 12 for p in snippet)
        management = len(site) + len(twin) + len(flood)
        stats = wait_until(lambda: (s := stats_of(watcher)) and s["received"] == management and s, 10,
                           f"{management} management frames received")
        source = stats["sources"][lab.capture]
        assert source["link"] == "radiotap" and source["kernel_dropped"] == 0 and source["received"] == management
    finally:
        stop.set()
        runner.join(10)
    assert not runner.is_alive()


@pytest.mark.parametrize("netmon, message", [
    ({"interface": "nosuch0"}, "netmon.interface: there is no network interface named 'nosuch0'"),
    ({"monitor_interface": "LAB"}, "netmon.monitor_interface: 'LAB' is not a monitor-mode radio"),
    ({"replay": [{"path": "/nonexistent.pcap"}]}, "netmon.replay.0.path: /nonexistent.pcap is not a file"),
])
def test_a_source_that_cannot_be_opened_stops_the_start_naming_its_setting(tmp_path, lab, mqtt_broker, netmon,
                                                                           message) -> None:
    netmon = {k: (lab.capture if v == "LAB" else v) for k, v in netmon.items()}
    message = message.replace("LAB", lab.capture)
    config = netmon_config(tmp_path, mqtt_broker.port, **netmon)
    done = subprocess.run([sys.executable, "-m", "edge.cli", "--config", str(config), "run", "netmon"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
