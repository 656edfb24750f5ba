"""What detectors hand back (a Finding: a fact's fields plus the frames behind it) and their capped state."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class Finding:
    """A detector's verdict: the fact kind and fields, a key for repeats, and the triggering frames."""

    kind: str
    ts: float
    key: str
    signature: str
    fields: dict[str, Any]
    frames: tuple[tuple[float, bytes], ...] = field(default=())


class Capped(OrderedDict[K, V], Generic[K, V]):
    """A dict that keeps at most `limit` keys, dropping the least recently touched first: a flood of new MACs,
    IPs or BSSIDs costs a bounded amount of memory. `touch` marks a key as used; `dropped` counts evictions."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.dropped = 0

    def put(self, key: K, value: V) -> None:
        """Set and mark as most recent, evicting the oldest when full."""
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)
            self.dropped += 1

    def touch(self, key: K) -> None:
        """Mark an existing key as most recently used."""
        self.move_to_end(key)
