"""Time-sortable identifiers (UUIDv7) for events, alerts and outbox messages."""

from __future__ import annotations

import os
import random
import threading
import time
import uuid

_lock = threading.Lock()
# Ids need to be unique, not unguessable: a seeded PRNG is ten times cheaper than os.urandom per id.
_random = random.Random(os.urandom(32))
_last_ms = 0
_counter = 0


def _build(ms: int, rand_a: int, rand_b: int) -> str:
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= (rand_a & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand_b & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def new_id() -> str:
    """Return a new UUIDv7 string; ids made in one process sort in the order they were made."""
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms = ms
            _counter = _random.getrandbits(10)
        else:
            _counter += 1
            if _counter > 0xFFF:
                # The 12-bit counter ran out within one millisecond: borrow the next one.
                _last_ms += 1
                _counter = 0
        return _build(_last_ms, _counter, _random.getrandbits(62))
