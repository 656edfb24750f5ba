"""For a bench script named like the package it measures (kiosk.py, vision.py): import this first.

Python puts the script's folder first on the path, so `import kiosk` would find bench/kiosk.py itself. This
takes bench/ off the path (after importing bench/bus.py, whose percentile every bench figure uses).
"""

from __future__ import annotations

import sys
from pathlib import Path

from bus import percentile

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

__all__ = ["percentile"]
