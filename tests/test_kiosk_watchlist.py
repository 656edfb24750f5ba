"""The watchlist holds a listed name however it is typed: case, accents, spacing, look-alikes, styled letters."""

from __future__ import annotations

import unicodedata

import pytest

from kiosk.watchlist import Watchlist

LISTED = ["Jan de Vries", "Olga Petrova", "Boris Ivanov"]


@pytest.fixture
def watchlist(tmp_path):
    path = tmp_path / "watchlist.txt"
    path.write_text("# site watchlist\n" + "\n".join(LISTED) + "\n", encoding="utf-8")
    return Watchlist(path)


@pytest.mark.parametrize("typed", [
    "J\u0430n de Vries",        # Cyrillic а
    "Jan d\u0435 Vri\u0435s",   # Cyrillic е
    "\u041elga P\u0435tr\u043eva",   # Cyrillic О, е, о
    "Olga Petr\u03bfva",        # Greek ο
    "B\u03bfris Ivan\u03bfv",   # Greek ο twice
    "\uff2aan de \uff36ries",   # fullwidth Ｊ and Ｖ
    "ＪＡＮ ＤＥ ＶＲＩＥＳ",      # all fullwidth
    "\u0406\u0430n de Vr\u0456es".replace("\u0406", "J"),  # Ukrainian і
])
def test_listed_name_typed_with_homoglyphs_is_held(watchlist, typed):
    assert watchlist.match(typed) is not None


def test_listed_name_entered_with_homoglyphs_matches_the_plain_name(tmp_path):
    """A look-alike in the file itself (pasted from a document) still matches the name typed in Latin."""
    path = tmp_path / "watchlist.txt"
    path.write_text("J\u0430n de Vries\n", encoding="utf-8")
    assert Watchlist(path).match("Jan de Vries") == "line 1"


@pytest.mark.parametrize("typed", ["Jan de Vries", "jan DE vries", "Jan de Vriés", "Jan-de-Vries",
                                   "Jan | de Vries"])
def test_listed_name_in_plain_spelling_is_still_held(watchlist, typed):
    assert watchlist.match(typed) is not None


@pytest.mark.parametrize("typed", ["Jan de Vos", "Jans de Vries", "Olga Petrovna", "Boris Ivanova", "Ilse de Vries",
                                   "Anna de Vries", "Jim de Vries", "Jan de Vnes"])
def test_ordinary_different_names_are_not_held(watchlist, typed):
    assert watchlist.match(typed) is None


def test_i_and_l_stay_apart(tmp_path):
    """TS #39 puts capital I with l; names are folded to lower case first so `Ilse` never matches `llse`."""
    path = tmp_path / "watchlist.txt"
    path.write_text("Ilse Bakker\n", encoding="utf-8")
    watchlist = Watchlist(path)
    assert watchlist.match("llse Bakker") is None
    assert watchlist.match("ILSE BAKKER") == "line 1"


MATH_STYLES = ["BOLD", "ITALIC", "BOLD ITALIC", "SCRIPT", "BOLD SCRIPT", "FRAKTUR", "BOLD FRAKTUR", "DOUBLE-STRUCK",
               "SANS-SERIF", "SANS-SERIF BOLD", "SANS-SERIF ITALIC", "SANS-SERIF BOLD ITALIC", "MONOSPACE"]
# Letters the Letterlike Symbols block had before the mathematical block was made: that block leaves them out.
_LETTERLIKE = {"FRAKTUR": "BLACK-LETTER", "SCRIPT": "SCRIPT", "DOUBLE-STRUCK": "DOUBLE-STRUCK"}


def in_math_style(text: str, style: str) -> str:
    """`text` with every Latin letter in one Mathematical Alphanumeric style (`𝐈𝐯𝐚𝐧`, `𝕀𝕧𝕒𝕟`, `ℐ𝓋𝒶𝓃`)."""
    def one(ch: str) -> str:
        if not ch.isascii() or not ch.isalpha():
            return ch
        case = "CAPITAL" if ch.isupper() else "SMALL"
        try:
            return unicodedata.lookup(f"MATHEMATICAL {style} {case} {ch.upper()}")
        except KeyError:
            return unicodedata.lookup(f"{_LETTERLIKE[style]} {case} {ch.upper()}")
    return "".join(one(ch) for ch in text)


@pytest.fixture
def ivan(tmp_path):
    path = tmp_path / "watchlist.txt"
    path.write_text("Ivan Petrov\n", encoding="utf-8")
    return Watchlist(path)


@pytest.mark.parametrize("style", MATH_STYLES)
def test_listed_name_typed_in_mathematical_letters_is_held(ivan, style):
    """NFKC makes a mathematical capital a plain capital I; case has to be folded after it, not before, or the
    skeleton sees `I` and makes it `l` (`𝐈van` -> `lvan`, not `ivan`)."""
    whole = in_math_style("Ivan Petrov", style)
    assert whole != "Ivan Petrov"
    assert ivan.match(whole) == "line 1"
    assert ivan.match(in_math_style("I", style) + "van Petrov") == "line 1"


@pytest.mark.parametrize("typed", [
    "\u13a5van Petrov",               # Cherokee letter V, looks like i and has no lower case to fold to
    "\uab75van Petrov",               # Cherokee small letter V
    "\u13a5v\u0430n P\u0435tr\u043ev",      # Cherokee Ꭵ with Cyrillic а, е, о
    "\U0001d408\u03bdan \u0420etr\u03bfv",  # bold 𝐈, Greek ν and ο, Cyrillic Р
    "\U0001d540van P\u0435\U0001d42dr\u043ev",  # double-struck 𝕀, bold t, Cyrillic е, о
    "\u0406\uff56\u0430n \uff30etrov",      # Ukrainian І, fullwidth ｖ and Ｐ, Cyrillic а
])
def test_listed_name_typed_in_cherokee_or_mixed_scripts_is_held(ivan, typed):
    assert ivan.match(typed) == "line 1"


def test_listed_name_written_in_mathematical_letters_matches_the_plain_name(tmp_path):
    path = tmp_path / "watchlist.txt"
    path.write_text(in_math_style("Ivan Petrov", "BOLD") + "\n", encoding="utf-8")
    assert Watchlist(path).match("Ivan Petrov") == "line 1"


def test_i_and_l_stay_apart_in_mathematical_letters(tmp_path):
    """A bold capital I is an I and a bold small l is an l: folding them to plain letters merges neither."""
    path = tmp_path / "watchlist.txt"
    path.write_text("Ilse Bakker\nIvan Petrov\n", encoding="utf-8")
    watchlist = Watchlist(path)
    assert watchlist.match(in_math_style("Ilse Bakker", "BOLD")) == "line 1"
    assert watchlist.match(in_math_style("llse Bakker", "BOLD")) is None
    assert watchlist.match("lvan Petrov") is None


def test_folded_letters_still_match_their_spelling_out(tmp_path):
    """`þ` is `th` and `ø` is `o` before look-alikes are folded: TS #39 alone would make `þ` a `p`."""
    path = tmp_path / "watchlist.txt"
    path.write_text("Ægir Þórsson\nSøren Kierkegaard\n", encoding="utf-8")
    watchlist = Watchlist(path)
    assert watchlist.match("Aegir Thorsson") == "line 1"
    assert watchlist.match("Soren Kierkegaard") == "line 2"
