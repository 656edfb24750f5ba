"""netmon on captures written by the test with scapy: the detectors, the fast path against scapy's own
dissection, malformed frames, capped state, evidence, the inventory and the replay command."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.config_netmon import NetmonSettings
from netmon import reference, scenarios
from netmon.engine import Engine, read_capture
from netmon.evidence import header_length, summaries, write_snippet
from netmon.inventory import Inventory, InventoryError
from netmon.packets import DLT_EN10MB, DLT_IEEE802_11_RADIO, Malformed, parse_ethernet, parse_radiotap


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> tuple[Path, Path]:
    return scenarios.write_captures(tmp_path_factory.mktemp("captures"))


def known_inventory(**kwargs) -> Inventory:
    inventory = Inventory(**kwargs)
    inventory.import_csv(["mac"] + scenarios.KNOWN)
    return inventory


def run(paths: list[Path], parse=None, **overrides) -> tuple[Engine, list]:
    engine = Engine(NetmonSettings(**{**scenarios.SETTINGS, **overrides}), known_inventory(), parse=parse)
    found = []
    for path in paths:
        for linktype, ts, frame in read_capture(path):
            found += engine.feed(linktype, ts, frame)
    return engine, found


def test_the_wired_capture_gives_exactly_its_findings(captures) -> None:
    engine, found = run([captures[0]])
    assert sorted((f.kind, f.key) for f in found) == sorted(scenarios.EXPECTED_WIRED)
    assert engine.counters.malformed == 0 and engine.counters.received == engine.counters.parsed
    by_kind = {f.kind: f for f in found}
    assert by_kind["rogue_dhcp_server_seen"].fields == {"server_ip": "10.0.0.66", "server_mac": "02:00:00:00:00:66",
                                                        "offered_ip": "10.0.0.51"}
    laptop = next(f for f in found if f.key == f"station:{scenarios.NEW_LAPTOP}")
    assert laptop.fields["vendor"].startswith("Apple")
    protocols = sorted(f.fields["protocol"] for f in found if f.kind == "personal_vpn_seen")
    assert protocols == ["esp", "ike", "openvpn", "openvpn", "wireguard"]


def test_the_wifi_capture_gives_exactly_its_findings(captures) -> None:
    _, found = run([captures[1]])
    assert sorted((f.kind, f.key) for f in found) == sorted(scenarios.EXPECTED_WIFI)
    twin = next(f for f in found if f.fields.get("bssid") == scenarios.EVIL and f.kind == "rogue_access_point_seen")
    assert len(twin.fields["reasons"]) == 3 and twin.fields["security"] == "open" and twin.fields["channel"] == 11
    flood = next(f for f in found if f.kind == "deauth_flood_seen")
    assert flood.signature == "BCASTDISCON" and flood.fields["broadcast"] and len(flood.frames) == 8


def test_the_fast_path_and_scapy_agree_on_every_frame(captures) -> None:
    """The parity the fast path is held to: every record of every test capture equal to scapy's reading."""
    compared = 0
    for path in captures:
        for linktype, ts, frame in read_capture(path):
            fast = (parse_ethernet if linktype == DLT_EN10MB else parse_radiotap)(ts, frame)
            assert fast == reference.parse(linktype, ts, frame), frame.hex()
            compared += fast is not None
    assert compared > 1000
    _, fast_found = run(list(captures))
    _, ref_found = run(list(captures), parse=reference.parse)
    assert [(f.kind, f.key, f.fields) for f in fast_found] == [(f.kind, f.key, f.fields) for f in ref_found]


def test_no_finding_without_agent_subnets_or_corporate_networks(captures) -> None:
    """Only the allow-lists make rogue APs, look-alikes and VPN findings: an unconfigured box still reports
    what needs no list (new stations, any DHCP server, ARP flip-flops, deauth floods, attack tools)."""
    _, found = run(list(captures), wifi={}, vpn={}, lan={})
    assert {f.kind for f in found} == {"station_seen", "rogue_dhcp_server_seen", "arp_spoofing_seen",
                                       "deauth_flood_seen", "attack_tool_seen"}


def _frames(path: Path) -> list[tuple[int, float, bytes]]:
    return list(read_capture(path))


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400), linktype=st.sampled_from([DLT_EN10MB, DLT_IEEE802_11_RADIO]))
def test_random_bytes_never_raise_and_are_counted(data, linktype) -> None:
    engine = Engine(NetmonSettings(**scenarios.SETTINGS), Inventory())
    engine.feed(linktype, 1.0, data)
    c = engine.counters
    assert c.received == 1 and c.parsed + c.malformed <= 1


def test_truncated_and_corrupted_real_frames_are_counted_not_raised(captures) -> None:
    rng = random.Random(7)
    engine = Engine(NetmonSettings(**scenarios.SETTINGS), Inventory())
    frames = _frames(captures[0]) + _frames(captures[1])
    for linktype, ts, frame in frames:
        for cut in (rng.randrange(len(frame)), len(frame) // 2, 13, 30):
            engine.feed(linktype, ts, frame[:cut])
        flipped = bytearray(frame)
        for _ in range(3):
            flipped[rng.randrange(len(flipped))] = rng.randrange(256)
        engine.feed(linktype, ts, bytes(flipped))
        engine.feed(linktype, ts, frame + bytes(rng.randrange(3000)))  # oversized: trailing junk
    c = engine.counters
    assert c.malformed > 1000 and c.received == 6 * len(frames)
    assert "ethernet_short" in c.reasons and "radiotap_bad_length" in c.reasons


def test_a_flood_of_new_macs_keeps_state_capped() -> None:
    from scapy.layers.l2 import ARP, Ether

    engine = Engine(NetmonSettings(max_keys=100, report_every_s=1), Inventory())
    for k in range(3000):
        mac = f"02:{k >> 8:02x}:{k & 0xFF:02x}:00:00:01"
        frame = bytes(Ether(src=mac) / ARP(hwsrc=mac, psrc=f"10.1.{k >> 8}.{k & 0xFF}", pdst="10.1.0.1"))
        engine.feed(DLT_EN10MB, k * 0.001, frame)
    lan = engine.lan
    assert len(lan.seen) == 100 and len(lan.bindings) == 100 and lan.seen.dropped == 2900
    assert len(engine._reported) <= 100


def test_learning_mode_records_stations_instead_of_reporting_them(captures) -> None:
    inventory = Inventory(learn_until=scenarios.T0 + 3600)
    engine = Engine(NetmonSettings(**scenarios.SETTINGS), inventory)
    stations = [f for _, ts, frame in read_capture(captures[0]) for f in engine.feed(DLT_EN10MB, ts, frame)
                if f.kind == "station_seen"]
    assert stations and all(f.fields["learning"] for f in stations)
    assert scenarios.NEW_LAPTOP in inventory.approved()


def test_evidence_keeps_headers_and_drops_payloads(tmp_path) -> None:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.utils import rdpcap

    secret = b"password=hunter2&card=4111111111111111"
    frame = bytes(Ether() / IP(src="10.20.0.9", dst="93.184.216.34") / TCP(dport=443) / Raw(secret))
    path = write_snippet(tmp_path / "e.pcap", DLT_EN10MB, [(scenarios.T0, frame)])
    assert secret[:8] not in path.read_bytes()
    (packet,) = rdpcap(str(path))
    assert packet[IP].dst == "93.184.216.34" and packet[TCP].dport == 443
    assert packet.wirelen == len(frame) and len(bytes(packet)) == header_length(DLT_EN10MB, frame) < len(frame)
    assert "93.184.216.34" in summaries(DLT_EN10MB, [(scenarios.T0, frame)])[0]


def test_inventory_csv_round_trip_and_a_bad_row_imports_nothing(tmp_path) -> None:
    import io

    inventory = Inventory(tmp_path / "inv.db")
    assert inventory.import_csv(["mac,name", "AA-BB-CC-00-00-01,front desk", "02:00:00:00:00:02,"]) == 2
    with pytest.raises(InventoryError, match="line 3: mac 'nope'"):
        inventory.import_csv(["mac", "02:00:00:00:00:03", "nope"])
    assert not inventory.knows("02:00:00:00:00:03")
    out = io.StringIO()
    assert inventory.export_csv(out) == 2
    assert "aa:bb:cc:00:00:01,,,front desk,yes" in out.getvalue()
    assert Inventory(tmp_path / "inv.db").knows("aa:bb:cc:00:00:01")


def test_unapproved_stations_leave_the_inventory_after_the_retention_period(tmp_path) -> None:
    inventory = Inventory(tmp_path / "inv.db")
    inventory.import_csv(["mac", "02:00:00:00:00:01"], now=1000.0)
    inventory.record_station("02:00:00:00:00:02", None, "10.0.0.2", 1000.0, approved=False)
    inventory.record_station("02:00:00:00:00:03", None, None, 5000.0, approved=False)
    assert inventory.prune(max_age_s=3000, now=6000.0) == 1
    assert not inventory.knows("02:00:00:00:00:02")
    assert inventory.knows("02:00:00:00:00:01") and inventory.knows("02:00:00:00:00:03")
    assert not Inventory(tmp_path / "inv.db").knows("02:00:00:00:00:02")


def test_a_deferred_station_is_written_only_once_its_fact_is_stored_and_survives_a_failed_write(tmp_path) -> None:
    """The service defers inventory writes and releases a station only after its fact is stored (a crash in
    between must leave it unreported-and-unknown, not known-but-never-reported); a failed write keeps it."""
    inventory = Inventory(tmp_path / "inv.db", deferred=True)
    inventory.record_station("02:00:00:00:00:aa", None, "10.0.0.9", 1.0, approved=False)
    assert inventory.knows("02:00:00:00:00:aa")  # in memory at once: not reported twice
    stored: set[str] = set()
    assert inventory.flush(ready=stored) == 0
    assert not Inventory(tmp_path / "inv.db").knows("02:00:00:00:00:aa")
    stored.add("02:00:00:00:00:aa")
    inventory.db.execute("ALTER TABLE stations RENAME TO gone")  # the write fails (a real sqlite error)
    with pytest.raises(Exception, match="no such table"):
        inventory.flush(ready=stored)
    inventory.db.execute("ALTER TABLE gone RENAME TO stations")
    assert inventory.flush(ready=stored) == 1 and stored == set()
    assert Inventory(tmp_path / "inv.db").knows("02:00:00:00:00:aa")


def test_access_points_are_inventoried_learned_and_approved_by_csv(captures, tmp_path) -> None:
    """Every access point heard goes into the inventory (the site's own, from the config, as approved); in the
    learning period a corporate SSID from an unlisted BSSID is learned as the site's; an imported CSV approves
    one. Channel and security are config policy and still count either way."""
    inventory = Inventory(tmp_path / "inv.db")
    engine = Engine(NetmonSettings(**scenarios.SETTINGS), inventory)
    for linktype, ts, frame in read_capture(captures[1]):
        engine.feed(linktype, ts, frame)
    import csv
    import io

    out = io.StringIO()
    assert inventory.export_aps_csv(out) == 7
    rows = {(r[0], r[1]): r[4] for r in list(csv.reader(io.StringIO(out.getvalue())))[1:]}
    assert rows[(scenarios.AP1, "CorpNet")] == "yes" and rows[(scenarios.EVIL, "CorpNet")] == "no"
    assert rows[("02:00:00:00:05:01", "Cafe Guest")] == "no" and len(rows) == 7
    assert any(ssid.startswith('{"name":"pwny"') for _, ssid in rows)  # an SSID with commas and quotes survives
    assert Inventory(tmp_path / "inv.db").knows_ap(scenarios.EVIL, "CorpNet")  # written at once when not deferred

    def evil_reasons(inv: Inventory) -> list[str]:
        eng = Engine(NetmonSettings(**scenarios.SETTINGS), inv)
        found = [f for lt, ts, fr in read_capture(captures[1]) for f in eng.feed(lt, ts, fr)]
        return next(f.fields["reasons"] for f in found if f.key == f"rogue_ap:{scenarios.EVIL}:CorpNet")

    assert "BSSID not on the list" in evil_reasons(Inventory())
    learning = Inventory(learn_until=scenarios.T0 + 3600)
    assert evil_reasons(learning) == ["channel 11 not in [1, 6]", "weaker security: open where wpa3 is set"]
    assert learning.approves_ap(scenarios.EVIL, "CorpNet")
    imported = Inventory()
    assert imported.import_aps_csv(["bssid,ssid,channel", f"{scenarios.EVIL.upper()},CorpNet,11"]) == 1
    assert "BSSID not on the list" not in evil_reasons(imported)
    with pytest.raises(InventoryError, match="line 3: bssid 'nope' is not a MAC address"):
        Inventory().import_aps_csv(["bssid,ssid", f"{scenarios.EVIL},CorpNet", "nope,CorpNet"])
    with pytest.raises(InventoryError, match="needs 'bssid' and 'ssid' columns"):
        Inventory().import_aps_csv(["bssid", scenarios.EVIL])


def test_replay_command_prints_the_findings_and_counters(captures, tmp_path) -> None:
    from edge.cli import cli

    config = tmp_path / "config.yaml"
    import yaml

    config.write_text(yaml.safe_dump({"site": {"id": "t"}, "data_dir": str(tmp_path / "data"),
                                      "netmon": scenarios.SETTINGS}, default_flow_style=False))
    known = tmp_path / "known.csv"
    known.write_text("mac\n" + "\n".join(scenarios.KNOWN) + "\n")
    result = CliRunner().invoke(cli, ["--config", str(config), "netmon", "replay", str(captures[0]),
                                      str(captures[1]), "--known", str(known)])
    assert result.exit_code == 0, result.output
    assert "APSPOOF" in result.output and "VPNBYPASS" in result.output
    n = len(scenarios.EXPECTED_WIRED) + len(scenarios.EXPECTED_WIFI)
    assert f"{n} findings; frames: 1077 read" in result.output and "0 malformed" in result.output
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"not a capture at all")
    result = CliRunner().invoke(cli, ["--config", str(config), "netmon", "replay", str(junk)])
    assert result.exit_code == 1 and "not a readable pcap/pcapng file" in result.output


def test_the_classic_pcap_reader_matches_scapys_and_survives_a_cut_file(captures, tmp_path) -> None:
    """netmon reads classic pcap itself (for speed): the same frames and times as scapy's reader, in both byte
    orders and nanosecond resolution; pcapng still goes through scapy; a file cut mid-record gives every whole
    frame before the cut; a record claiming an absurd length is an error naming the byte."""
    from scapy.utils import PcapNgWriter, RawPcapReader, wrpcap

    for path in captures:
        with RawPcapReader(str(path)) as reader:
            theirs = [(reader.linktype, meta.sec + meta.usec / 1e6, data) for data, meta in reader]
        assert list(read_capture(path)) == theirs
    packets = [frame for _, frame in scenarios.wired_frames()[:50]]
    for ts, frame in scenarios.wired_frames()[:50]:
        frame.time = ts
    wrpcap(str(tmp_path / "big.pcap"), packets, endianness=">")
    wrpcap(str(tmp_path / "nano.pcap"), packets, nano=True)
    with PcapNgWriter(str(tmp_path / "ng.pcapng")) as writer:
        writer.write(packets)
    expected = [(DLT_EN10MB, float(p.time), bytes(p)) for p in packets]
    for name in ("big.pcap", "nano.pcap", "ng.pcapng"):
        got = list(read_capture(tmp_path / name))
        assert [(lt, frame) for lt, _, frame in got] == [(lt, frame) for lt, _, frame in expected], name
        assert all(abs(a[1] - b[1]) < 1e-6 for a, b in zip(got, expected, strict=True)), name
    fcs = tmp_path / "fcs.pcap"  # link type field with LT_FCS_LENGTH_PRESENT, 4-byte FCS after every frame
    head = (0xA1B2C3D4).to_bytes(4, "little") + (2).to_bytes(2, "little") + (4).to_bytes(2, "little") + bytes(8) \
        + (65535).to_bytes(4, "little") + (0x24000001).to_bytes(4, "little")
    body = b"".join(int(ts).to_bytes(4, "little") + bytes(4) + (len(fr) + 4).to_bytes(4, "little") * 2 + fr
                    + b"\xde\xad\xbe\xef" for _, ts, fr in expected)
    fcs.write_bytes(head + body)
    assert [(lt, fr) for lt, _, fr in read_capture(fcs)] == [(lt, fr) for lt, _, fr in expected]
    whole = captures[0].read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(whole[:-30])
    assert len(list(read_capture(cut))) == len(list(read_capture(captures[0]))) - 1
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(whole[:24] + (0).to_bytes(8, "little") + (10**7).to_bytes(4, "little") * 2 + whole[40:])
    with pytest.raises(ValueError, match="corrupt record at byte 24"):
        list(read_capture(bad))


def test_network_rule_turns_findings_into_alerts() -> None:
    from edge.config import RulesSettings
    from edge.events import StationSeen, VpnTunnelCameUp, VpnTunnelWentDown
    from edge.rules.network import NetworkRule

    class Ctx:
        def __init__(self) -> None:
            self.raised, self.resolved = [], []

        def raise_alert(self, draft) -> None:
            self.raised.append(draft)

        def resolve(self, kind, trigger, note) -> None:
            self.resolved.append((kind, trigger))

    rule, ctx = NetworkRule(RulesSettings()), Ctx()
    base = {"site": "t", "source": "netmon/eth0", "interface": "eth0"}
    rule.on_fact(StationSeen(**base, signature="NEWSTATION", mac="02:00:00:00:00:09", learning=True), ctx)
    assert ctx.raised == []
    down = VpnTunnelWentDown(**base, signature="VPNTUNNELDOWN", agent_ip="10.20.0.5", concentrator="198.51.100.10",
                             silent_s=61.0, evidence="netmon/evidence/x.pcap", packets=["a line"])
    rule.on_fact(down, ctx)
    (draft,) = ctx.raised
    assert draft.kind == "vpn_tunnel_down" and [e.kind for e in draft.evidence] == ["pcap", "note"]
    rule.on_fact(VpnTunnelCameUp(**base, signature="VPNTUNNELUP", agent_ip="10.20.0.5",
                                 concentrator="198.51.100.10"), ctx)
    assert ctx.resolved == [("vpn_tunnel_down", down.event_id)]


def test_short_frames_raise_malformed_with_a_reason() -> None:
    with pytest.raises(Malformed, match="ethernet_short"):
        parse_ethernet(0.0, b"\x00" * 10)
    with pytest.raises(Malformed, match="radiotap_version"):
        parse_radiotap(0.0, b"\x01" + b"\x00" * 20)
