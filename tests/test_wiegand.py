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


@pytest.mark.parametrize(("alias", "canonical"), [
    ("C1K35", "C1000"), ("c1000", "C1000"), ("Corporate1000", "C1000"), ("Corporate 1000", "C1000"),
    ("H10301", "H10301"), ("h10301", "H10301"), ("26-bit", "H10301"), ("26bit", "H10301"), ("26", "H10301"),
    ("H10306", "H10306"), ("34-bit", "H10306"), ("H10304", "H10304"), ("37-bit", "H10304"), ("37BIT", "H10304"),
])
def test_format_aliases_decode_as_their_canonical_format(alias: str, canonical: str) -> None:
    from firmware_bridge.wiegand import resolve_formats

    (fmt,) = resolve_formats([alias])
    assert fmt is FORMATS[canonical]
    bits = encode(alias, 12, 345)
    assert decode(bits, (fmt,)) == CardRead(canonical, 12, 345)


def test_unknown_format_name_is_a_value_error_listing_the_valid_names() -> None:
    from firmware_bridge.wiegand import resolve_formats

    with pytest.raises(ValueError) as caught:
        resolve_formats(["H10301", "HID-48"])
    message = str(caught.value)
    assert "'HID-48'" in message
    for name in FORMATS:
        assert name in message


def test_wiegand_formats_are_exactly_the_config_format_names() -> None:
    """The config accepts names from edge.card_formats (the core imports no sibling); the decoder must have each."""
    from edge.card_formats import CARD_FORMATS

    assert tuple(FORMATS) == CARD_FORMATS


def _badge_config(tmp_path, formats: str):
    from edge.config import load_settings

    path = tmp_path / "config.yaml"
    path.write_text(f"site: {{id: s1}}\nbadge:\n  controllers:\n    ctl-1:\n      port: /dev/ttyACM0\n"
                    f"      doors:\n        front: {{formats: {formats}}}\n")
    return load_settings(path)


def test_config_accepts_format_aliases_and_keeps_the_canonical_name(tmp_path) -> None:
    settings = _badge_config(tmp_path, "[C1K35, 26-bit, h10306, 37]")
    assert settings.badge.controllers["ctl-1"].doors["front"].formats == ["C1000", "H10301", "H10306", "H10304"]


def test_unknown_format_in_config_is_an_error_at_its_key_path_listing_the_valid_names(tmp_path) -> None:
    from edge.config import ConfigError

    with pytest.raises(ConfigError) as caught:
        _badge_config(tmp_path, "[H10301, HID-48]")
    (problem,) = caught.value.problems
    assert problem.path == "badge.controllers.ctl-1.doors.front.formats.1"
    assert "unknown card format 'HID-48'" in problem.message
    for name in FORMATS:
        assert name in problem.message


def test_cardholder_format_alias_matches_the_decoded_card_format() -> None:
    from firmware_bridge.access import Cardholder

    holder = Cardholder(id="ann", credential="12:345", card_format="c1k35")
    assert holder.card_format == "C1000"
    with pytest.raises(ValueError, match="unknown card format"):
        Cardholder(id="bob", credential="12:345", card_format="HID-48")
