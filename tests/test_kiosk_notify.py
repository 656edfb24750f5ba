"""Host notices through a real SMTP server on loopback (aiosmtpd), including a server that is down at first."""

from __future__ import annotations

from datetime import timedelta

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message
from conftest import KioskSite
from test_kiosk_web import walk_in

from edge.brokers import free_port
from kiosk.desk import Desk
from kiosk.notify import Notifier


class Inbox(Message):
    def __init__(self) -> None:
        super().__init__()
        self.messages = []

    def handle_message(self, message) -> None:
        self.messages.append(message)


def test_host_is_emailed_once_even_when_the_server_was_down_at_first(tmp_path, mqtt_broker):
    port = free_port()
    site = KioskSite(tmp_path, mqtt_broker.port,
                     smtp={"host": "127.0.0.1", "port": port, "starttls": False, "sender": "kiosk@example.invalid"})
    try:
        walk_in(site, name="Nina Notify", company="Acme", host="anna", purpose="Quarterly review")
        walk_in(site, name="Ravi's Guest", host="ravi")  # Ravi has no e-mail address: nothing queued
        notifier = Notifier(site.desk, site.settings.kiosk.smtp)
        assert notifier.run_once() == 0 and notifier.failed == 1  # nothing listens on the port yet
        row = site.service.producer.db.execute("SELECT attempts, last_error, sent_at FROM notices").fetchall()
        assert len(row) == 1 and row[0][0] == 1 and row[0][1] and row[0][2] is None
        inbox = Inbox()
        server = Controller(inbox, hostname="127.0.0.1", port=port)
        server.start()
        try:
            assert notifier.run_once() == 0, "retried before its back-off"
            later = Desk(site.settings, site.service.producer, site.service.cipher,
                         clock=lambda: site.desk.clock() + timedelta(minutes=2))
            assert Notifier(later, site.settings.kiosk.smtp).run_once() == 1
            assert Notifier(later, site.settings.kiosk.smtp).run_once() == 0
        finally:
            server.stop()
        (mail,) = inbox.messages
        assert mail["To"] == "anna@example.invalid" and mail["From"] == "kiosk@example.invalid"
        assert mail["Subject"] == "Your visitor Nina Notify (Acme) has arrived"
        body = mail.get_payload()
        assert "Hello Anna de Vries," in body and "Quarterly review" in body
    finally:
        site.close()
