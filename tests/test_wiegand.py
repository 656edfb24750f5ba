"""Wiegand formats: the bit layouts of the issue, checked by hand-built frames and by round trips."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.wiegand import FORMATS, BadRead, CardRead, WiegandBits, decode, encode, mask_credential

ALL = tuple(FORMATS.values())


def _even(bits: list[int]) -> int:
    return sum(bits) % 2


def _odd(bits: list[int]) -> int:
    return 1 - sum(bits) % 2


def _num(value: int, width: int) -> list[int]:
    return [int(c) for c in format(value, f"0{width}b")]


def test_h10301_matches_hand_built_frame() -> None:
    """b0 even over b1-b12, facility b1-b8, card b9-b24, b25 odd over b13-b24."""
    body = _num(12, 8) + _num(34567, 16)
    bits = [_even(body[:12]), *body, _odd(body[12:])]
    assert str(encode("H10301", 12, 34567)) == "".join(map(str, bits))
    assert decode(WiegandBits.from_string("".join(map(str, bits))), ALL) == CardRead("H10301", 12, 34567)


def test_h10306_matches_hand_built_frame() -> None:
    body = _num(4321, 16) + _num(65000, 16)
    bits = [_even(body[:16]), *body, _odd(body[16:])]
    assert str(encode("H10306", 4321, 65000)) == "".join(map(str, bits))


def test_h10304_matches_hand_built_frame() -> None:
    """b0 even over b1-b18 and b36 odd over b18-b35: bits 17 and 18 (card's top) are in both halves."""
    body = _num(700, 16) + _num(500_000, 19)  # positions 1..35
    b = [0, *body, 0]
    b[0] = _even(b[1:19])
    b[36] = _odd(b[18:36])
    assert str(encode("H10304", 700, 500_000)) == "".join(map(str, b))


def test_corporate_1000_matches_hand_built_frame() -> None:
    """b1 even over 2..33 with p%3!=1, b34 odd over 1..32 with p%3!=0, b0 odd over the whole frame."""
    b = [0, 0, *_num(3000, 12), *_num(1_000_000, 20), 0]
    assert len(b) == 35
    b[1] = _even([b[p] for p in range(2, 34) if p % 3 != 1])
    b[34] = _odd([b[p] for p in range(1, 33) if p % 3 != 0])
    b[0] = _odd(b[1:])
    assert sum(b) % 2 == 1
    assert str(encode("C1000", 3000, 1_000_000)) == "".join(map(str, b))


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_single_bit_flip_is_caught_or_changes_the_card(name: str) -> None:
    """One flipped bit never decodes silently to the same card: parity fails, or (no format) a field bit moved."""
    fmt = FORMATS[name]
    good = encode(fmt, 77, 1234)
    caught = 0
    for position in range(fmt.length):
        bad = WiegandBits(good.count, good.value ^ (1 << (fmt.length - 1 - position)))
        result = decode(bad, [fmt])
        assert result != CardRead(name, 77, 1234)
        caught += isinstance(result, BadRead)
    assert caught == fmt.length  # every one of these formats covers every bit with some parity


@given(st.sampled_from(list(FORMATS)), st.data())
def test_round_trip_any_card(name: str, data: st.DataObject) -> None:
    fmt = FORMATS[name]
    facility = data.draw(st.integers(0, fmt.max_facility))
    card = data.draw(st.integers(0, fmt.max_card))
    bits = encode(fmt, facility, card)
    assert decode(bits, [fmt]) == CardRead(name, facility, card)
    assert WiegandBits.from_bytes(bits.count, bits.to_bytes()) == bits


def test_unknown_length_and_parity_errors_are_results_not_exceptions() -> None:
    rng = random.Random(5)
    for _ in range(20_000):
        count = rng.randint(0, 64)
        bits = WiegandBits(count, rng.getrandbits(count) if count else 0)
        result = decode(bits, ALL)
        assert isinstance(result, CardRead | BadRead)
    assert decode(WiegandBits.from_string("1" * 30), ALL).reason == "unknown_length"
    assert decode(WiegandBits.from_string("1" * 26), ALL).reason == "parity_error"


def test_only_configured_formats_are_tried() -> None:
    bits = encode("H10306", 1, 2)
    assert decode(bits, [FORMATS["H10301"]]) == BadRead("unknown_length", 34, "34 bits; this reader expects [26]")


def test_out_of_range_numbers_are_refused_by_the_encoder() -> None:
    with pytest.raises(ValueError, match="facility 256"):
        encode("H10301", 256, 1)


def test_masking_keeps_the_card_number_out() -> None:
    read = CardRead("H10301", 12, 34567)
    assert read.masked == "H10301:12/****7"
    assert "34567" not in read.masked
    assert mask_credential("ascii", "ABCDEF") == "ascii:****F"
