"""Name matching and short codes: pure functions."""

from __future__ import annotations

import secrets
import unicodedata

# Badge and invite codes avoid look-alikes (0/O, 1/I/L) so they can be typed from a printed badge.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
BADGE_CODE_LEN = 6
INVITE_CODE_LEN = 8
QR_PREFIX = "SW:"
_FOLD = {"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "đ": "d", "ł": "l", "ı": "i", "þ": "th"}


def normalize_name(name: str) -> str:
    """The form names are matched in: case, accents, spacing and punctuation ignored.

    `José  van der Berg`, `jose van-der-berg` and `JOSÉ VANDERBERG` all give `josevanderberg`.
    """
    text = unicodedata.normalize("NFKD", name.casefold())
    out = []
    for ch in text:
        if unicodedata.combining(ch):
            continue
        ch = _FOLD.get(ch, ch)
        if ch.isalnum():
            out.append(ch)
    return "".join(out)


def new_code(length: int) -> str:
    """A random code from the unambiguous alphabet."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))


def clean_code(typed: str) -> str:
    """What a visitor typed or a scanner sent, as a code: prefix, spaces and dashes dropped, upper case."""
    text = typed.strip()
    if text.upper().startswith(QR_PREFIX):
        text = text[len(QR_PREFIX):]
    return "".join(ch for ch in text.upper() if ch not in " -\t")


def single_line(value: str) -> str:
    """Collapse whitespace (form fields are single-line); control characters become spaces."""
    kept = "".join(ch if unicodedata.category(ch) != "Cc" else " " for ch in value)
    return " ".join(kept.split())
