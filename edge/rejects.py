"""Counting and logging bad input: each distinct problem is logged once with context, all are counted."""

from __future__ import annotations

import logging
from collections import Counter

logger = logging.getLogger(__name__)

_HEAD_BYTES = 60
# Distinct (where, reason) pairs remembered; garbage on ever-new topics must not grow memory without end.
MAX_LOGGED_KEYS = 1000


class RejectLog:
    """Counts rejected messages by reason and logs the first of each (where, reason) at WARNING.

    A flood of the same garbage must not flood the log, and must not hide a new kind of problem.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts: Counter[str] = Counter()
        self._logged: set[tuple[str, str]] = set()

    def reject(self, where: str, reason: str, detail: str, payload: bytes = b"",
               error: BaseException | None = None) -> None:
        """Count one rejected message; log it (with `error`'s traceback, if given) if this (where, reason) was
        not logged before."""
        self.counts[reason] += 1
        key = (where, reason)
        if key in self._logged:
            logger.debug("%s rejected again from %s: %s: %s", self.name, where, reason, detail)
            return
        if len(self._logged) >= MAX_LOGGED_KEYS:
            if len(self._logged) == MAX_LOGGED_KEYS:
                self._logged.add(("", "(limit)"))
                logger.warning("%s: %d distinct kinds of bad input logged; further new ones are only counted",
                               self.name, MAX_LOGGED_KEYS)
            return
        self._logged.add(key)
        head = payload[:_HEAD_BYTES]
        logger.warning(
            "%s rejected a message from %s: %s: %s (%d bytes, starts %r); further %s from there are counted, "
            "not logged", self.name, where, reason, detail, len(payload), head, reason, exc_info=error,
        )

    @property
    def total(self) -> int:
        """All rejections so far."""
        return sum(self.counts.values())
