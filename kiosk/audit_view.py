"""Audit entries as the console shows them: local time in the site's zone, actions and details in the reader's words.

Entries are stored with UTC times, action codes and details that are counts or codes (never personal data);
here they become sentences in the page's language. A detail this module does not know is shown as stored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kiosk.forms import N_
from kiosk.store import parse_iso

ACTIONS = {
    "login": N_("Logged in"),
    "logout": N_("Logged out"),
    "add_user": N_("Staff account added"),
    "api_token": N_("API token created"),
    "check_in": N_("Visitor checked in"),
    "check_out": N_("Visitor checked out"),
    "watchlist_hold": N_("Held by the watchlist"),
    "release_hold": N_("Held visitor let in"),
    "refuse_hold": N_("Held visitor turned away"),
    "pre_register": N_("Visit pre-registered"),
    "cancel": N_("Expected visit cancelled"),
    "print_badge": N_("Badge printed"),
    "roll_call": N_("Roll call opened"),
    "end_of_day_check_out": N_("End-of-day check-out"),
    "anonymize": N_("Old visits anonymized"),
    "erase_person": N_("Visits of a person erased"),
    "rotate_key": N_("Encryption key rotated"),
}
# Details that start with a count: the sentence each action's count goes into.
COUNTED = {
    "roll_call": N_("%(count)s on site"),
    "end_of_day_check_out": N_("%(count)s visits"),
    "anonymize": N_("%(count)s visits"),
    "erase_person": N_("%(count)s visits"),
    "rotate_key": N_("%(count)s values re-encrypted"),
}
# Who checked a visitor in or out.
BY = {"kiosk": N_("at the kiosk"), "reception": N_("by reception"), "end_of_day": N_("at the end of the day")}
_COUNT = re.compile(r"^(\d+)\b")


@dataclass(frozen=True)
class AuditLine:
    """One audit entry, ready for the page."""

    at: datetime | None
    actor: str
    action: str
    visit_id: str
    detail: str


def audit_lines(entries: Iterable[dict[str, Any]], gettext: Callable[[str, dict[str, object] | None], str]
                ) -> list[AuditLine]:
    """The stored entries as lines in one language (`gettext(message, args)` translates)."""
    lines = []
    for entry in entries:
        action, detail = entry["action"], entry["detail"] or ""
        counted = _COUNT.match(detail)
        if action in COUNTED and counted:
            detail = gettext(COUNTED[action], {"count": int(counted.group(1))})
        elif action in ("check_in", "check_out") and detail in BY:
            detail = gettext(BY[detail], None)
        lines.append(AuditLine(at=parse_iso(entry["at"]), actor=entry["actor"],
                               action=gettext(ACTIONS[action], None) if action in ACTIONS else action,
                               visit_id=entry["visit_id"] or "", detail=detail))
    return lines
