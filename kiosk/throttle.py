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

Each lock is reported once, when it begins, through `on_lock` (the kiosk writes it to the audit log).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

logger = logging.getLogger(__name__)

ADDRESS_FACTOR = 4
ACCOUNT_FACTOR = 2
BACKOFF_BASE_S = 2.0
BACKOFF_MAX_S = 60.0
MAX_KEYS = 10_000

Lock = Literal["account_address", "address", "account_backoff"]


@dataclass(frozen=True)
class Verdict:
    """Whether a sign-in try may go ahead, and if not, which limit holds it and for how long."""

    allowed: bool
    lock: Lock | None = None
    retry_after_s: float = 0.0


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
        self._fails: dict[tuple[str, ...], deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, ...], now: float) -> deque[float]:
        hits = self._fails[key]
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        return hits

    def _backoff(self, failures: int) -> float:
        return min(BACKOFF_BASE_S * 2 ** (failures - self.account_attempts), BACKOFF_MAX_S)

    def check(self, account: str, address: str, known_address: bool) -> Verdict:
        """May this address try this account now? `known_address`: the account signed in from it before."""
        account = account.casefold()
        now = self.clock()
        with self._lock:
            pair = self._recent(("pair", account, address), now)
            if len(pair) >= self.attempts:
                return Verdict(False, "account_address", pair[0] + self.window_s - now)
            by_address = self._recent(("address", address), now)
            if len(by_address) >= self.address_attempts:
                return Verdict(False, "address", by_address[0] + self.window_s - now)
            by_account = self._recent(("account", account), now)
            if not known_address and len(by_account) >= self.account_attempts:
                wait = by_account[-1] + self._backoff(len(by_account)) - now
                if wait > 0:
                    return Verdict(False, "account_backoff", wait)
        return Verdict(True)

    def failed(self, account: str, address: str, what: str) -> None:
        """Count one failed try (`what`: "password" or "code"); a limit it reaches is reported once."""
        account = account.casefold()
        now = self.clock()
        began: list[Lock] = []
        with self._lock:
            for lock, key, limit in (("account_address", ("pair", account, address), self.attempts),
                                     ("address", ("address", address), self.address_attempts),
                                     ("account_backoff", ("account", account), self.account_attempts)):
                hits = self._recent(key, now)
                hits.append(now)
                if len(hits) == limit:
                    began.append(lock)  # type: ignore[arg-type]
            if len(self._fails) > MAX_KEYS:  # forget idle keys so a scan cannot grow memory without bound
                for key in [k for k, v in self._fails.items() if not v or v[-1] <= now - self.window_s]:
                    del self._fails[key]
        for lock in began:
            logger.warning("sign-in %s lock on %r from %s after a wrong %s", lock, account, address, what)
            if self.on_lock is not None:
                self.on_lock(lock, account, address, what)

    def succeeded(self, account: str, address: str) -> None:
        """A full sign-in: this pair's failures are forgotten (the account's and the address's stay)."""
        with self._lock:
            self._fails.pop(("pair", account.casefold(), address), None)
