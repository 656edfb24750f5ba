"""Retention of evidence files (snapshots, pcap snippets): an age limit, then a size limit, oldest first."""

from __future__ import annotations

import time
from pathlib import Path


def prune_files(folder: Path, pattern: str, max_age_s: float, max_bytes: float, now: float | None = None) -> int:
    """Delete files matching `pattern` under `folder` older than `max_age_s`, then the oldest until the rest
    fit in `max_bytes`; returns how many were deleted. A file deleted meanwhile is skipped."""
    now = time.time() if now is None else now
    files = []
    for path in folder.rglob(pattern):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        files.append((stat.st_mtime, stat.st_size, path))
    files.sort(key=lambda f: f[0])
    removed = 0
    total = sum(size for _, size, _ in files)
    for mtime, size, path in files:
        if now - mtime > max_age_s or total > max_bytes:
            path.unlink(missing_ok=True)
            total -= size
            removed += 1
    return removed
