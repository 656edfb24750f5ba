"""Refresh the message template and merge it into each catalog: `python kiosk/locale/update.py`.

Extraction uses Babel with `kiosk/babel.cfg`; new messages arrive untranslated (the catalog test fails until
they are translated), messages no longer used are dropped.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
KIOSK = HERE.parent


def main() -> int:
    """Extract, then update every language's catalog."""
    pot = HERE / "messages.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F", str(KIOSK / "babel.cfg"),
                    "-k", "N_", "--no-location", "--omit-header", "--sort-output", "-o", str(pot), str(KIOSK)],
                   check=True)
    for po in sorted(HERE.glob("*/LC_MESSAGES/messages.po")):
        subprocess.run([sys.executable, "-m", "babel.messages.frontend", "update", "-i", str(pot), "-o", str(po),
                        "-l", po.parent.parent.name, "--no-fuzzy-matching", "--ignore-obsolete", "--omit-header"],
                       check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
