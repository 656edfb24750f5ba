"""The watchlist holds a listed name however it is typed: case, accents, spacing, and Unicode look-alikes."""

from __future__ import annotations

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


@pytest.mark.parametrize("typed", ["Jan de Vries", "jan DE vries", "Jan de Vriés", "Jan-de-Vries"])
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
