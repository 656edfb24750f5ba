"""Wiegand card format names: the canonical four and the aliases people and tools use for them."""

from __future__ import annotations

import re
from typing import Literal

CardFormatName = Literal["H10301", "H10306", "C1000", "H10304"]
CARD_FORMATS: tuple[CardFormatName, ...] = ("H10301", "H10306", "C1000", "H10304")

# Keys are compared after upper-casing and dropping spaces, '-', '_' and '.': `26-bit`, `26 Bit` and `26bit`
# are one key. 37 bits means H10304 here: the other 37-bit layout (H10302, no facility) is not supported.
_ALIASES: dict[str, CardFormatName] = {
    **{key: "H10301" for key in ("H10301", "26", "26BIT", "HID26", "STANDARD26", "STANDARD26BIT")},
    **{key: "H10306" for key in ("H10306", "34", "34BIT", "HID34")},
    **{key: "C1000" for key in ("C1000", "C1K35", "C1K", "C1K35BIT", "CORPORATE1000", "CORP1000",
                                "HIDCORPORATE1000", "35", "35BIT")},
    **{key: "H10304" for key in ("H10304", "37", "37BIT", "HID37")},
}
_IGNORED = re.compile(r"[\s\-_.]+")


def known_names() -> str:
    """The accepted names for error messages: each canonical name with its common aliases."""
    shown = {"H10301": "26-bit", "H10306": "34-bit", "C1000": "Corporate1000, C1K35, 35-bit", "H10304": "37-bit"}
    return "; ".join(f"{name} ({shown[name]})" for name in CARD_FORMATS)


def canonical_format(name: str) -> CardFormatName:
    """`c1k35` -> `C1000`, `26-bit` -> `H10301`; ValueError listing the valid names for anything else."""
    key = _IGNORED.sub("", str(name)).upper()
    try:
        return _ALIASES[key]
    except KeyError:
        raise ValueError(f"unknown card format {name!r}; valid: {known_names()} (case-insensitive)") from None
