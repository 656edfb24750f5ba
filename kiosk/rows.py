"""Rendered rows of the reception console, kept by what they show.

A console screen reloads every 30 s and most rows have not changed since the last time, yet rendering a row
(escaping, gettext, Babel times) is most of the page's cost. A row's HTML depends only on the visit as
stored, the language, the reader's right to act on it and whether it is overdue; the CSRF token sits once
in the page's action form (`form="row-actions"` on each button), so rows are the same for every session.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

from jinja2 import Environment
from markupsafe import Markup

from kiosk.desk import Visit
from kiosk.i18n import Formatter

ROW_TEMPLATE = "_visit_row.html"


class RowCache:
    """Console rows rendered once per (language, kind, rights, overdue, visit) and kept, least recent out.

    A row lives at most `max_age_s`: a visit erased by the admin command (another process) leaves the lists
    at once, and its rendered row (which holds the name) leaves memory within that time.
    """

    def __init__(self, envs: dict[str, Environment], tz: ZoneInfo, hostname: Callable[[str], str],
                 size: int = 4096, max_age_s: float = 600.0) -> None:
        self.envs = envs
        self.tz = tz
        self.hostname = hostname
        self.size = size
        self.max_age_s = max_age_s
        self.rendered = 0
        self._rows: OrderedDict[tuple[object, ...], tuple[float, Markup]] = OrderedDict()
        self._lock = threading.Lock()

    def rows(self, lang: str, kind: str, visits: Iterable[Visit], manage: bool, now: datetime) -> list[Markup]:
        """The rows of one console table; `kind` is "on_site" (on site, held, overdue) or "expected"."""
        template = self.envs[lang].get_template(ROW_TEMPLATE)
        fmt = Formatter(lang, self.tz)
        out = []
        clock = time.monotonic()
        with self._lock:  # rows past their age go first (oldest first, so the scan stops early)
            while self._rows and clock - next(iter(self._rows.values()))[0] > self.max_age_s:
                self._rows.popitem(last=False)
        for v in visits:
            overdue = v.state == "on_site" and v.expected_end is not None and v.expected_end < now
            key = (lang, kind, manage, overdue, v)
            with self._lock:
                kept = self._rows.get(key)
            if kept is not None:
                out.append(kept[1])
                continue
            html = Markup(template.render(v=v, kind=kind, manage=manage, overdue=overdue, fmt=fmt,
                                          hostname=self.hostname))
            with self._lock:
                self.rendered += 1
                self._rows[key] = (clock, html)
                while len(self._rows) > self.size:
                    self._rows.popitem(last=False)
            out.append(html)
        return out
