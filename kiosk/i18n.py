"""Dutch and English: gettext catalogs (Babel `.po`, compiled in memory at start), dates in the site's zone."""

from __future__ import annotations

import io
from datetime import datetime
from functools import cache, lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = {"nl": "Nederlands", "en": "English"}
DOMAIN = "messages"


@cache
def translations(lang: str) -> NullTranslations:
    """The catalog of one language; English is the source language, so its catalog may be empty."""
    po = LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not po.is_file():
        return NullTranslations()
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(buf, domain=DOMAIN)


@lru_cache(maxsize=8192)
def _short_time(epoch_minute: int, tz: ZoneInfo, lang: str) -> str:
    return format_time(datetime.fromtimestamp(epoch_minute * 60, tz), "short", tzinfo=tz, locale=lang)


class Formatter:
    """Dates and times in the site's zone, written the way the visitor's language writes them."""

    def __init__(self, lang: str, tz: ZoneInfo) -> None:
        self.lang = lang
        self.tz = tz

    def datetime(self, moment: datetime | None) -> str:
        """e.g. `21 nov 2026 14:05` / `Nov 21, 2026, 2:05 PM`."""
        return "" if moment is None else format_datetime(moment, "medium", tzinfo=self.tz, locale=self.lang)

    def date(self, moment: datetime | None) -> str:
        """Long date in the site's zone, e.g. `21 november 2026`."""
        return "" if moment is None else format_date(moment.astimezone(self.tz).date(), "long", locale=self.lang)

    def time(self, moment: datetime | None) -> str:
        """Short time in the site's zone, e.g. `14:05` / `2:05 PM`."""
        if moment is None:
            return ""
        # Babel takes ~40 us a call, and a console page shows hundreds of times: one per minute is enough.
        return _short_time(int(moment.timestamp() // 60), self.tz, self.lang)
