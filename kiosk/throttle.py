"""Staff sign-in throttling that slows guessing without letting a guesser lock staff out.

Three limits, each over a sliding window of failed tries (wrong password or wrong code):

- per account *and* address: `attempts` failures lock that pair only, so wrong passwords typed for `rita` on
  some laptop never stop `rita` at the reception PC;
- per address, across accounts: `attempts * ADDRESS_FACTOR` failures lock the address (one machine trying
  many names);
- per account, across addresses: past `attempts * ACCOUNT_FACTOR` failures (more than one address can make
  before its pair lock, so several addresses are guessing) the account answers an address it has never been
  signed in from at most once per backoff (doubling up to `BACKOFF_MAX_S`), so a guesser with many addresses
  is slowed to a crawl. Addresses the account signed in from before are spared: the reception PC still gets in.

A try is counted when it is let through (as pending, until its result settles it), not only when its slow
password hash comes back: parallel guesses cannot all pass the check before the first failure is counted.

Each lock is reported once, when it begins, through `on_lock` (the kiosk writes it to the audit log).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Literal

logger = logging.getLogger(__name__)

ADDRESS_FACTOR = 4
ACCOUNT_FACTOR = 2
BACKOFF_BASE_S = 2.0
BACKOFF_MAX_S = 60.0
MAX_KEYS = 10_000

Lock = Literal["account_address", "address", "account_backoff"]


class SlidingWindow:
    """Event times per key within the last `window_s`, in memory; the caller holds its own lock. Keys idle for
    a whole window are forgotten once there are more than MAX_KEYS, so a scan cannot grow memory without bound.
    The kiosk's check-in limit (auth.RateLimiter) and the sign-in throttle both count on it."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._hits: dict[Hashable, deque[float]] = defaultdict(deque)

    def recent(self, key: Hashable, now: float) -> deque[float]:
        """The key's event times inside the window ending `now`, oldest first."""
        hits = self._hits[key]
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        return hits

    def add(self, key: Hashable, now: float) -> deque[float]:
        """Count one event at `now` against the key; its recent times, this one included."""
        hits = self.recent(key, now)
        hits.append(now)
        if len(self._hits) > MAX_KEYS:
            for idle in [k for k, v in self._hits.items() if not v or v[-1] <= now - self.window_s]:
                del self._hits[idle]
        return hits

    def forget(self, key: Hashable) -> None:
        """Drop the key's events."""
        self._hits.pop(key, None)


@dataclass(frozen=True)
class Verdict:
    """Whether a sign-in try may go ahead, and if not, which limit holds it and for how long."""

    allowed: bool
    lock: Lock | None = None
    retry_after_s: float = 0.0


class Attempt:
    """One sign-in try the throttle let through (or refused: `verdict`), counted as failed until it is settled.

    Use it as a context manager: `failed()` inside the block counts the failure; leaving the block any other way
    (right password, an error) frees the try's place without counting it.
    """

    def __init__(self, throttle: LoginThrottle, verdict: Verdict, account: str = "", address: str = "",
                 keys: tuple[tuple[str, ...], ...] = ()) -> None:
        self.verdict = verdict
        self._throttle, self._account, self._address, self._keys = throttle, account, address, keys

    def failed(self, what: str) -> None:
        """The try failed (`what`: "password" or "code"); a limit it reaches is reported once (may write the
        audit log: call it from a worker thread)."""
        keys, self._keys = self._keys, ()
        if keys:
            self._throttle._settle(self._account, self._address, keys, what)

    def __enter__(self) -> Attempt:
        return self

    def __exit__(self, *exc: object) -> None:
        keys, self._keys = self._keys, ()
        if keys:
            self._throttle._settle(self._account, self._address, keys, None)


class LoginThrottle:
    """Failed sign-ins counted per (account, address), per address and per account, in memory."""

    def __init__(self, attempts: int, window_s: float, clock: Callable[[], float] = time.monotonic,
                 on_lock: Callable[[Lock, str, str, str], None] | None = None) -> None:
        self.attempts = attempts
        self.address_attempts = attempts * ADDRESS_FACTOR
        self.account_attempts = attempts * ACCOUNT_FACTOR
        self.window_s = window_s
        self.clock = clock
        self.on_lock = on_lock
        self._fails = SlidingWindow(window_s)
        self._pending: dict[tuple[str, ...], int] = {}  # tries allowed and not yet settled, per key
        self._lock = threading.Lock()

    def _backoff(self, failures: int) -> float:
        return min(BACKOFF_BASE_S * 2 ** (failures - self.account_attempts), BACKOFF_MAX_S)

    def _count(self, key: tuple[str, ...], now: float) -> tuple[deque[float], int]:
        """The key's recent failures and their number with the tries still under way counted as failures."""
        hits = self._fails.recent(key, now)
        return hits, len(hits) + self._pending.get(key, 0)

    def attempt(self, account: str, address: str, known_address: bool) -> Attempt:
        """May this address try this account now? `known_address`: the account signed in from it before.

        An allowed try is counted at once, as if it failed, until it is settled (`Attempt.failed`, or leaving
        its `with` block): checking and counting in two steps around the slow password hash let forty parallel
        guesses all pass the check before the first failure was counted.
        """
        account = account.casefold()
        keys = (("pair", account, address), ("address", address), ("account", account))
        now = self.clock()
        with self._lock:
            pair, pair_n = self._count(keys[0], now)
            if pair_n >= self.attempts:
                return Attempt(self, Verdict(False, "account_address", self._wait(pair, now)))
            by_address, address_n = self._count(keys[1], now)
            if address_n >= self.address_attempts:
                return Attempt(self, Verdict(False, "address", self._wait(by_address, now)))
            by_account, account_n = self._count(keys[2], now)
            if not known_address and account_n >= self.account_attempts:
                if self._pending.get(keys[2]):  # one try of a slowed account is under way: wait for it
                    return Attempt(self, Verdict(False, "account_backoff", BACKOFF_BASE_S))
                wait = by_account[-1] + self._backoff(len(by_account)) - now
                if wait > 0:
                    return Attempt(self, Verdict(False, "account_backoff", wait))
            for key in keys:
                self._pending[key] = self._pending.get(key, 0) + 1
        return Attempt(self, Verdict(True), account, address, keys)

    def _wait(self, hits: deque[float], now: float) -> float:
        return hits[0] + self.window_s - now if hits else BACKOFF_BASE_S  # only tries under way: soon

    def _release(self, keys: tuple[tuple[str, ...], ...]) -> None:
        for key in keys:
            left = self._pending.get(key, 0) - 1
            if left > 0:
                self._pending[key] = left
            else:
                self._pending.pop(key, None)

    def _settle(self, account: str, address: str, keys: tuple[tuple[str, ...], ...], what: str | None) -> None:
        """A try under way is over: a failure (`what`: "password" or "code") is counted, a lock it reaches is
        reported once; anything else only frees its place."""
        now = self.clock()
        began: list[Lock] = []
        with self._lock:
            self._release(keys)
            if what is None:
                return
            for lock, key, limit in (("account_address", keys[0], self.attempts),
                                     ("address", keys[1], self.address_attempts),
                                     ("account_backoff", keys[2], self.account_attempts)):
                if len(self._fails.add(key, now)) == limit:
                    began.append(lock)  # type: ignore[arg-type]
        for lock in began:
            logger.warning("sign-in %s lock on %r from %s after a wrong %s", lock, account, address, what)
            if self.on_lock is not None:
                self.on_lock(lock, account, address, what)

    def succeeded(self, account: str, address: str) -> None:
        """A full sign-in: this pair's failures are forgotten (the account's and the address's stay)."""
        with self._lock:
            self._fails.forget(("pair", account.casefold(), address))
