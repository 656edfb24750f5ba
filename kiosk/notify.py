"""Host notices by e-mail through the site's SMTP server, from a durable queue with retries."""

from __future__ import annotations

import logging
import smtplib
import ssl
from datetime import timedelta
from email.message import EmailMessage

from edge.config import SmtpSettings, read_secret
from kiosk.desk import Desk, VisitNotFound
from kiosk.i18n import Formatter, translations
from kiosk.store import iso

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 20
MAX_BACKOFF_S = 1800


class Notifier:
    """Sends what the `notices` table holds; a failed send waits and tries again, up to MAX_ATTEMPTS."""

    def __init__(self, desk: Desk, smtp: SmtpSettings) -> None:
        self.desk = desk
        self.smtp = smtp
        self.sent = 0
        self.failed = 0

    def due(self) -> list[tuple[int, str, int]]:
        """(id, visit id, attempts) of notices to send now."""
        with self.desk.producer.lock:
            return [tuple(r) for r in self.desk.db.execute(  # type: ignore[misc]
                "SELECT id, visit_id, attempts FROM notices WHERE sent_at IS NULL AND attempts < ? AND "
                "next_try_at <= ? ORDER BY id LIMIT 20", [MAX_ATTEMPTS, iso(self.desk.clock())]).fetchall()]

    def run_once(self) -> int:
        """Send every due notice; returns how many went out."""
        sent = 0
        for notice_id, visit_id, attempts in self.due():
            try:
                message = self.compose(visit_id)
                if message is not None:
                    self.send(message)
            except (OSError, smtplib.SMTPException, VisitNotFound) as err:
                self.failed += 1
                wait = min(MAX_BACKOFF_S, 30 * 2 ** attempts)
                level = logging.ERROR if attempts + 1 >= MAX_ATTEMPTS else logging.WARNING
                logger.log(level, "host notice %d (visit %s) not sent, try %d of %d: %s", notice_id, visit_id,
                           attempts + 1, MAX_ATTEMPTS, err)
                with self.desk.producer.atomic():
                    self.desk.db.execute("UPDATE notices SET attempts = attempts + 1, next_try_at = ?, last_error = ? "
                                         "WHERE id = ?", [iso(self.desk.clock() + timedelta(seconds=wait)),
                                                          str(err)[:300], notice_id])
                continue
            with self.desk.producer.atomic():
                self.desk.db.execute("UPDATE notices SET sent_at = ?, attempts = attempts + 1 WHERE id = ?",
                                     [iso(self.desk.clock()), notice_id])
            sent += 1
            self.sent += 1
        return sent

    def compose(self, visit_id: str) -> EmailMessage | None:
        """The arrival notice for the visit's host, in the site's language; None when there is no one to tell."""
        visit = self.desk.get(visit_id)
        host = self.desk.kiosk.hosts.get(visit.host_id)
        if host is None or not host.email or visit.anonymized:
            return None
        lang = self.desk.kiosk.default_language
        _ = translations(lang).gettext
        fmt = Formatter(lang, self.desk.tz)
        who = f"{visit.name} ({visit.company})" if visit.company else visit.name
        message = EmailMessage()
        message["From"] = self.smtp.sender
        message["To"] = host.email
        message["Subject"] = _("Your visitor %(who)s has arrived") % {"who": who}
        body = [_("Hello %(host)s,") % {"host": host.name}, "",
                _("%(who)s checked in at reception at %(time)s.") % {"who": who,
                                                                      "time": fmt.time(visit.checked_in_at)}]
        if visit.purpose:
            body.append(_("Purpose: %(purpose)s") % {"purpose": visit.purpose})
        body += ["", _("Please collect your visitor at reception."), "", "-- SiteWarden"]
        message.set_content("\n".join(body))
        return message

    def send(self, message: EmailMessage) -> None:
        """One delivery try."""
        with smtplib.SMTP(self.smtp.host, self.smtp.port, timeout=self.smtp.timeout_s) as client:
            if self.smtp.starttls:
                client.starttls(context=ssl.create_default_context())
            if self.smtp.username and self.smtp.password_file:
                client.login(self.smtp.username, read_secret(self.smtp.password_file))
            client.send_message(message)
