"""Checks a `make demo` log for what the demo must show (CI runs it after `make demo DURATION=60`).

Usage: python3 .ci/check_demo.py LOG DATA_DIR EXIT_CODE; prints each check and exits 1 if any failed.
Standard library only: it runs with whatever python3 the machine has.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ALERTS = {
    "door_forced_open": r"NEW +high +door_forced_open +front ",
    "door_held_open": r"NEW +medium +door_held_open +back-office ",
    "denied_swipes": r"NEW +medium +denied_swipes +front ",
    "a network finding (rogue_ap, deauth_flood, vpn_bypass or unknown_device)":
        r"NEW +\w+ +(rogue_ap|deauth_flood|vpn_bypass|unknown_device) ",
}
TAILGATE = re.compile(r"NEW +high +tailgate_detected +front .* snapshot (\S+\.jpg)")
SUMMARY = re.compile(r"Demo finished: \d+ alert messages")


def check(log: str, data_dir: Path, exit_code: int) -> list[tuple[str, bool]]:
    """Each check's description and whether it passed."""
    results = [(f"the demo exited 0 (got {exit_code})", exit_code == 0)]
    snapshots = TAILGATE.findall(log)
    results.append(("tailgate_detected at the front door with a snapshot", bool(snapshots)))
    if snapshots:
        path = data_dir / snapshots[0]
        results.append((f"its snapshot {path} exists", path.is_file() and path.stat().st_size > 0))
    results += [(name, re.search(pattern, log) is not None) for name, pattern in ALERTS.items()]
    results.append(("no unauthorized_entry (the camera and the doors tell one story)",
                    "unauthorized_entry" not in log))
    results.append(("the closing summary", SUMMARY.search(log) is not None))
    results.append(("no traceback", "Traceback" not in log))
    return results


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    log_path, data_dir, code = Path(argv[0]), Path(argv[1]), int(argv[2])
    results = check(log_path.read_text(errors="replace"), data_dir, code)
    for what, ok in results:
        print(f"  {'ok  ' if ok else 'FAIL'}  {what}")
    failed = [what for what, ok in results if not ok]
    if failed:
        print(f"demo check failed: {'; '.join(failed)} (log: {log_path})", file=sys.stderr)
        return 1
    print("demo check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
