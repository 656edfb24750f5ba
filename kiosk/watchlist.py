"""The site's watch/deny list: a file of names, matched ignoring case, accents, spacing, punctuation and look-alikes."""

from __future__ import annotations

import logging
import threading
import unicodedata
from pathlib import Path

from disarm import normalize_confusables, skeleton_key

from kiosk.text import normalize_name

logger = logging.getLogger(__name__)

# Rounds of the confusable fold, NFKC and case folding until the text stops changing: each can hand the next
# something to do (a confusable maps to a capital, folding case then lowers it); names settle in one or two.
_FOLD_ROUNDS = 4


def watch_key(name: str) -> str:
    """What a name is matched by: compatibility form and case folded first, then its Unicode TS #39 skeleton.

    The skeleton maps look-alikes to one prototype (Cyrillic `а`, Greek `ο`, fullwidth `ｊ` -> `a`, `o`, `j`), so a
    listed name typed with a homoglyph is still held. TS #39 puts capital `I` with `l`, so every capital has to be
    gone before the skeleton runs, or `Ilse` and `llse` would be one name: NFKC first (mathematical `𝐈`, `𝕀`, `𝓘`
    are a plain `I` only after it), then case folding and the usual folding of accents, spacing and punctuation,
    then the confusable fold and case folding again for letters that have no lower case to fold to (Cherokee `Ꭵ`
    looks like `i`; case folding leaves Cherokee capitals as they are). Both the list and the typed name go
    through this same function.

    `normalize_name` itself stays as it is: it also makes the visitors' blind index, and stored visits are found
    by the index their name was given when they were written.
    """
    text = normalize_name(unicodedata.normalize("NFKC", name).casefold())
    for _ in range(_FOLD_ROUNDS):
        folded = unicodedata.normalize("NFKC", normalize_confusables(text)).casefold()
        if folded == text:
            break
        text = folded
    return skeleton_key(text).casefold() if text else ""


class Watchlist:
    """Names from a file, one per line (`#` starts a comment); re-read when the file changes."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, str] = {}  # watch_key of the name -> entry reference ("line 12")
        self._stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        """Re-read the file when its size or mtime changed; a missing file keeps the last list and says so."""
        if self.path is None:
            return
        try:
            st = self.path.stat()
        except OSError as err:
            logger.error("watchlist %s cannot be read (%s): keeping the %d entries loaded before",
                         self.path, err.strerror, len(self._entries))
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        entries: dict[str, str] = {}
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), start=1):
            text = line.split("#", 1)[0].strip()
            key = watch_key(text)
            if key:
                entries.setdefault(key, f"line {number}")
        with self._lock:
            self._entries = entries
            self._stamp = stamp
        logger.info("watchlist %s: %d entries", self.path, len(entries))

    def match(self, name: str) -> str | None:
        """The reference of the entry this name matches, or None."""
        self.refresh()
        with self._lock:
            return self._entries.get(watch_key(name))

    def __len__(self) -> int:
        return len(self._entries)
