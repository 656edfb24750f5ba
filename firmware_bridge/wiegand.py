"""Wiegand bits -> card: the four formats sites wire, with encoders beside the decoders (bit 0 is sent first)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from edge.card_formats import canonical_format

ParityKind = Literal["even", "odd"]


@dataclass(frozen=True)
class WiegandBits:
    """A read as it came off D0/D1: `count` bits, bit 0 (sent first) is the most significant bit of `value`."""

    count: int
    value: int

    def __post_init__(self) -> None:
        if self.count < 0 or self.value < 0 or self.value >> self.count:
            raise ValueError(f"{self.value:#x} does not fit in {self.count} bits")

    def bit(self, position: int) -> int:
        """Bit at `position`, counted from the first bit sent."""
        return (self.value >> (self.count - 1 - position)) & 1

    def to_bytes(self) -> bytes:
        """Packed MSB first, the first bit sent in the top bit of byte 0, zero padding at the end."""
        pad = (-self.count) % 8
        return (self.value << pad).to_bytes((self.count + pad) // 8, "big")

    @classmethod
    def from_bytes(cls, count: int, data: bytes) -> WiegandBits:
        """The inverse of `to_bytes`; padding bits are ignored."""
        if len(data) * 8 < count:
            raise ValueError(f"{len(data)} bytes cannot hold {count} bits")
        pad = len(data) * 8 - count
        return cls(count, int.from_bytes(data, "big") >> pad)

    @classmethod
    def from_string(cls, text: str) -> WiegandBits:
        """From `"0110..."`, first bit sent first."""
        if not text or set(text) - {"0", "1"}:
            raise ValueError("Wiegand bits are a non-empty string of 0 and 1")
        return cls(len(text), int(text, 2))

    def __str__(self) -> str:
        return format(self.value, f"0{self.count}b") if self.count else ""


@dataclass(frozen=True)
class Parity:
    """Parity bit at `position` over `covers` (which may include the bit itself for a whole-frame parity)."""

    position: int
    kind: ParityKind
    covers: tuple[int, ...]


@dataclass(frozen=True)
class Field:
    """A number stored MSB first in `width` bits from `start`."""

    start: int
    width: int

    def read(self, bits: WiegandBits) -> int:
        return (bits.value >> (bits.count - self.start - self.width)) & ((1 << self.width) - 1)


@dataclass(frozen=True)
class WiegandFormat:
    """A card layout: length, the facility and card fields, and the parity bits in the order they are computed."""

    name: str
    length: int
    facility: Field
    card: Field
    parities: tuple[Parity, ...]

    @property
    def max_facility(self) -> int:
        return (1 << self.facility.width) - 1

    @property
    def max_card(self) -> int:
        return (1 << self.card.width) - 1


def _span(first: int, last: int) -> tuple[int, ...]:
    return tuple(range(first, last + 1))


FORMATS: dict[str, WiegandFormat] = {
    f.name: f
    for f in (
        WiegandFormat("H10301", 26, Field(1, 8), Field(9, 16),
                      (Parity(0, "even", _span(1, 12)), Parity(25, "odd", _span(13, 24)))),
        WiegandFormat("H10306", 34, Field(1, 16), Field(17, 16),
                      (Parity(0, "even", _span(1, 16)), Parity(33, "odd", _span(17, 32)))),
        WiegandFormat("C1000", 35, Field(2, 12), Field(14, 20),
                      (Parity(1, "even", tuple(p for p in range(2, 34) if p % 3 != 1)),
                       Parity(34, "odd", tuple(p for p in range(1, 33) if p % 3 != 0)),
                       Parity(0, "odd", _span(0, 34)))),
        WiegandFormat("H10304", 37, Field(1, 16), Field(17, 19),
                      (Parity(0, "even", _span(1, 18)), Parity(36, "odd", _span(18, 35)))),
    )
}
FORMAT_NAMES: tuple[str, ...] = tuple(FORMATS)


@dataclass(frozen=True)
class CardRead:
    """A read that decoded cleanly."""

    format: str
    facility: int
    card: int

    @property
    def credential(self) -> str:
        """The key cardholders are enrolled under: `facility:card`."""
        return f"{self.facility}:{self.card}"

    @property
    def masked(self) -> str:
        """Safe for logs and facts: the facility and only the last digit of the card number."""
        return mask_credential(self.format, self.credential)


@dataclass(frozen=True)
class BadRead:
    """A read that did not decode: noise on the wire, a reader of another format, or tampering."""

    reason: Literal["parity_error", "unknown_length"]
    count: int
    detail: str

    @property
    def masked(self) -> str:
        return f"raw:{self.count}bit"


def mask_credential(fmt: str, credential: str) -> str:
    """`H10301:12/****5`: the card number never appears whole outside the cardholder database."""
    facility, sep, card = credential.rpartition(":")
    if not sep:
        return f"{fmt}:****{credential[-1:]}"
    return f"{fmt}:{facility}/****{card[-1:]}"


def _parity_bit(bits_value: int, count: int, parity: Parity) -> int:
    ones = sum((bits_value >> (count - 1 - p)) & 1 for p in parity.covers if p != parity.position)
    want_odd = parity.kind == "odd"
    return (ones % 2) ^ 1 if want_odd else ones % 2


def encode(fmt: WiegandFormat | str, facility: int, card: int) -> WiegandBits:
    """The bits a reader of `fmt` sends for this card, parity included."""
    f = format_named(fmt) if isinstance(fmt, str) else fmt
    if not 0 <= facility <= f.max_facility:
        raise ValueError(f"{f.name}: facility {facility} outside 0..{f.max_facility}")
    if not 0 <= card <= f.max_card:
        raise ValueError(f"{f.name}: card number outside 0..{f.max_card}")
    value = 0
    for field, number in ((f.facility, facility), (f.card, card)):
        value |= number << (f.length - field.start - field.width)
    for parity in f.parities:
        value |= _parity_bit(value, f.length, parity) << (f.length - 1 - parity.position)
    return WiegandBits(f.length, value)


def failed_parities(fmt: WiegandFormat, bits: WiegandBits) -> list[int]:
    """Positions of the parity bits that do not hold (empty when the read is good)."""
    failed = []
    for parity in fmt.parities:
        ones = sum(bits.bit(p) for p in parity.covers if p != parity.position) + bits.bit(parity.position)
        if ones % 2 != (1 if parity.kind == "odd" else 0):
            failed.append(parity.position)
    return failed


def format_named(name: str) -> WiegandFormat:
    """The format for a name or a common alias (`C1K35`, `26-bit`, ...); ValueError listing the valid names."""
    return FORMATS[canonical_format(name)]


def resolve_formats(names: Iterable[str]) -> tuple[WiegandFormat, ...]:
    """Format objects for config names or aliases; ValueError naming the unknown one and listing the valid."""
    return tuple(format_named(name) for name in names)


def decode(bits: WiegandBits, formats: Sequence[WiegandFormat]) -> CardRead | BadRead:
    """The first of `formats` with this length whose parity holds; never raises for any bits."""
    candidates = [f for f in formats if f.length == bits.count]
    if not candidates:
        lengths = sorted({f.length for f in formats})
        return BadRead("unknown_length", bits.count, f"{bits.count} bits; this reader expects {lengths}")
    problems = []
    for f in candidates:
        failed = failed_parities(f, bits)
        if not failed:
            return CardRead(f.name, f.facility.read(bits), f.card.read(bits))
        problems.append(f"{f.name} parity bits {failed} fail")
    return BadRead("parity_error", bits.count, "; ".join(problems))
