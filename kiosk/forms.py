"""Form and API input checks: each field's limits, with messages that are gettext ids (translated on display)."""

from __future__ import annotations

import base64
import binascii
import csv
import io
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kiosk.text import single_line

N_ = str  # marks a message id for extraction; translated where it is shown

_NOT_EMAIL = r"@\s<>\"'\x00-\x1f\x7f-\x9f"
EMAIL_PATTERN = rf"^[^{_NOT_EMAIL}]{{1,64}}@[^{_NOT_EMAIL}]{{1,190}}\.[^{_NOT_EMAIL}]{{2,}}$"
EMAIL_RE = re.compile(EMAIL_PATTERN)
PHONE_PATTERN = r"^\+?[0-9(][0-9 ()./-]{4,37}[0-9)]$"
# A name: no control characters, and at least one character that is not a space.
NAME_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
PHONE_RE = re.compile(PHONE_PATTERN)
LIMITS = {"name": 100, "company": 100, "purpose": 200, "email": 254, "phone": 40}
MAX_SIGNATURE_BYTES = 300_000
MAX_PHOTO_BYTES = 1_500_000
MAX_FORM_BYTES = 3 * 1024 * 1024  # the whole request: a photo and a signature as data URLs fit well inside

MSG = {
    "name_required": N_("Please enter your name."),
    "too_long": N_("This is too long (at most %(limit)s characters)."),
    "email": N_("This is not an e-mail address."),
    "phone": N_("This is not a phone number."),
    "host_unknown": N_("Please pick your host from the list."),
    "unknown_fields": N_("The form held fields it does not have (%(fields)s); nothing was saved."),
    "signature_missing": N_("Please sign in the box."),
    "signature_bad": N_("The signature could not be read; please sign again."),
    "accept_missing": N_("Please accept the house rules to continue."),
    "photo_bad": N_("The photo could not be read; please take it again or skip it."),
    "code_unknown": N_("No visit with this code is checked in. Check the code on your badge."),
    "invite_unknown": N_("This invite code is not valid today. Check it, or check in without it."),
    "rate_limited": N_("Too many tries. Please wait a minute, or ask reception."),
    "flow_expired": N_("This check-in timed out. Please start again."),
    "csrf": N_("This page was open too long or came from elsewhere. Please try again."),
    "cookie_missing": N_("Your browser did not send this kiosk's cookie back, so the form cannot be accepted. "
                         "Cookies are blocked, or the kiosk was opened over http:// from another machine: "
                         "open it over https://, or ask reception."),
    "date_bad": N_("Give a date and time as YYYY-MM-DD HH:MM."),
    "end_before_start": N_("The end must be after the start."),
}


@dataclass(frozen=True)
class VisitorDetails:
    """A visitor's details, checked and tidied."""

    name: str
    company: str
    host_id: str
    purpose: str
    email: str | None
    phone: str | None


@dataclass
class FormErrors:
    """Per-field messages (gettext id plus its arguments), and messages about the form as a whole."""

    fields: dict[str, tuple[str, dict[str, object]]]
    general: list[tuple[str, dict[str, object]]]

    def __bool__(self) -> bool:
        return bool(self.fields or self.general)


def unknown_fields(form: Mapping[str, object], allowed: set[str]) -> FormErrors | None:
    """Refuse a form carrying fields we do not know (a tampered or stale page)."""
    extra = sorted(set(form) - allowed)
    if not extra:
        return None
    shown = ", ".join(name[:30] for name in extra[:5])
    return FormErrors({}, [(MSG["unknown_fields"], {"fields": shown})])


def check_visitor(form: Mapping[str, str], hosts: Mapping[str, object]) -> tuple[VisitorDetails | None, FormErrors]:
    """Check the check-in (or pre-registration) fields; either details or errors, never both."""
    errors = FormErrors({}, [])
    values: dict[str, str] = {}
    stripped: dict[str, str] = {}
    for field, limit in LIMITS.items():
        raw = form.get(field, "")
        stripped[field] = raw.strip() if isinstance(raw, str) else ""
        value = single_line(stripped[field])
        if len(value) > limit:
            errors.fields[field] = (MSG["too_long"], {"limit": limit})
        values[field] = value
    if not values["name"] and "name" not in errors.fields:
        errors.fields["name"] = (MSG["name_required"], {})
    # E-mail and phone are checked as typed (less the ends), so the API's patterns say exactly what passes.
    if values["email"] and "email" not in errors.fields and not EMAIL_RE.match(stripped["email"]):
        errors.fields["email"] = (MSG["email"], {})
    if values["phone"] and "phone" not in errors.fields and not PHONE_RE.match(stripped["phone"]):
        errors.fields["phone"] = (MSG["phone"], {})
    host_id = str(form.get("host_id", "")).strip()
    if host_id not in hosts:
        errors.fields["host_id"] = (MSG["host_unknown"], {})
    if errors:
        return None, errors
    return VisitorDetails(name=values["name"], company=values["company"], host_id=host_id,
                          purpose=values["purpose"], email=values["email"] or None,
                          phone=values["phone"] or None), errors


def data_url(value: str, mime: str, limit: int) -> bytes | None:
    """The bytes of a `data:<mime>;base64,...` URL, or None when it is not one or is too large."""
    prefix = f"data:{mime};base64,"
    if not value.startswith(prefix) or len(value) > limit * 4 // 3 + len(prefix) + 4:
        return None
    try:
        data = base64.b64decode(value[len(prefix):], validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(data) > limit:
        return None
    magic = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}[mime]
    return data if data.startswith(magic) else None


CSV_COLUMNS = ("name", "company", "host_id", "start", "end", "email", "phone", "purpose")


def parse_visits_csv(raw: bytes, check: Callable[[dict[str, str]], tuple[Any, FormErrors]]
                     ) -> tuple[list[Any], list[tuple[int, str, dict[str, object]]]]:
    """Rows of a pre-registration CSV, all checked first: any bad row means nothing is imported."""
    problems: list[tuple[int, str, dict[str, object]]] = []
    if len(raw) > MAX_FORM_BYTES:
        return [], [(0, N_("The file is too large."), {})]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return [], [(0, N_("The file is not UTF-8 text."), {})]
    reader = csv.DictReader(io.StringIO(text))
    missing = {"name", "host_id", "start"} - set(reader.fieldnames or ())
    if missing:
        return [], [(1, N_("The header lacks a column: %(columns)s"), {"columns": ", ".join(sorted(missing))})]
    unknown = set(reader.fieldnames or ()) - set(CSV_COLUMNS)
    if unknown:
        return [], [(1, N_("The header has unknown columns: %(columns)s"), {"columns": ", ".join(sorted(unknown))})]
    rows = []
    for line, row in enumerate(reader, start=2):
        checked, errors = check({k: (v or "") for k, v in row.items() if k is not None})
        if checked is None:
            problems.extend((line, N_("%(field)s: %(message)s"), {"field": field, "message": message % args
                                                                                  if args else message})
                            for field, (message, args) in errors.fields.items())
        else:
            rows.append(checked)
        if len(rows) > 5000:
            return [], [(line, N_("More than 5000 rows: split the file."), {})]
    return rows, problems
