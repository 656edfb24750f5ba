"""`sitewarden demo`, as a user runs it: grants, denials, door, tailgating and network alerts appear within 30 s,
all confirmed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("broker", ["mosquitto", "embedded"])
def test_demo_shows_grants_denials_and_door_alerts_within_30_s(tmp_path: Path, broker: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "edge.cli", "demo", "--duration", "30", "--broker", broker,
         "--data-dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=120,
    )
    out = done.stdout
    assert done.returncode == 0, f"{out}\n{done.stderr}"
    assert re.search(r"GRANT +access_granted +front +H10301:12/\*\*\*\*1 \(alice\)", out), out
    assert re.search(r"DENY +access_denied +front +H10301:99/\*\*\*\*2: unknown_card", out), out
    assert re.search(r"DENY +access_denied +back-office +H10301:12/\*\*\*\*2: outside_schedule", out), out
    assert re.search(r"NEW +high +door_forced_open +front ", out), out
    assert re.search(r"NEW +medium +door_held_open +back-office ", out), out
    assert re.search(r"END +medium +door_held_open +back-office .*resolved by rule:door_held_open", out), out
    # The camera at the front door sees two people come in on Alice's grant; the alert names its snapshot.
    tailgate = re.search(r"NEW +high +tailgate_detected +front .*2 people in on one grant to alice .* snapshot "
                         r"(vision/snapshots/cam-front/\S+\.jpg)", out)
    assert tailgate, out
    assert (tmp_path / "demo" / tailgate[1]).read_bytes()[:2] == b"\xff\xd8"
    # netmon replays the generated minute of the site's network: the evil twin, the flood, the bypass.
    assert re.search(r"NEW +high +rogue_ap +netmon/replay-demo-wifi .*SSID 'CorpNet' from 02:66:66:66:66:66 .*"
                     r"open where wpa3 is set", out), out
    assert re.search(r"NEW +high +deauth_flood +netmon/replay-demo-wifi .*broadcast", out), out
    assert re.search(r"NEW +high +vpn_bypass +netmon/replay-demo-wired .*agent 10\.20\.0\.9 reached "
                     r"93\.184\.216\.34:443/tcp", out), out
    summary = re.search(r"Demo finished: (\d+) alert messages .*; (\d+) confirmed by the console", out)
    assert summary, out
    shown, confirmed = int(summary[1]), int(summary[2])
    assert shown >= 3 and confirmed == shown, out
    assert "Traceback" not in done.stderr, done.stderr
