"""The kiosk in `sitewarden demo`: a host directory, a watchlist, pre-registered visits and a staff login."""

from __future__ import annotations

import threading
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from edge.brokers import free_port
from edge.config import Settings
from edge.events import utcnow

DEMO_USER = "reception"
DEMO_PASSWORD = "demo-reception-2026"
EXPECTED = [("Sanne Jansen", "Bakker Logistiek", "anna"), ("Tom Peeters", "Acme Audit", "ravi"),
            ("Mei Lin", "Northwind", "anna")]


def demo_settings(data_dir: Path) -> dict[str, Any]:
    """The kiosk section of the demo config."""
    watchlist = data_dir / "watchlist.txt"
    watchlist.parent.mkdir(parents=True, exist_ok=True)
    watchlist.write_text("# demo watchlist: try checking in as one of these\nMallory Example\nEve Eavesdropper\n",
                         encoding="utf-8")
    return {
        "port": free_port(),
        "secure_cookies": True,  # Chromium and Firefox keep Secure cookies on http://127.0.0.1 and localhost
        "default_language": "en",
        "watchlist_file": str(watchlist),
        "hosts": {
            "anna": {"name": "Anna de Vries", "department": "Facilities", "email": "anna@example.invalid"},
            "ravi": {"name": "Ravi Kumar", "department": "Finance"},
            "joost": {"name": "Joost Bakker", "department": "IT"},
            "lotte": {"name": "Lotte Visser", "department": "HR"},
        },
        "house_rules": {"version": "2026-1", "text": {
            "nl": "Draag uw bezoekerspas zichtbaar.\n\nFotograferen is niet toegestaan.\n\nU blijft bij uw "
                  "gastheer of gastvrouw.",
            "en": "Wear your visitor badge where it can be seen.\n\nNo photography.\n\nStay with your host."}},
    }


def seed_demo(settings: Settings, stop: threading.Event) -> None:
    """Wait for the kiosk, then add a staff login and today's expected visits, and say where it all is."""
    url = f"http://{settings.kiosk.listen_host}:{settings.kiosk.port}/"
    deadline = time.monotonic() + 60
    while not stop.is_set():
        try:
            with urllib.request.urlopen(url, timeout=2):
                break
        except OSError:
            if time.monotonic() > deadline:
                click.echo(f"  kiosk: did not answer at {url} within 60 s; see logs/kiosk.log", err=True)
                return
            stop.wait(0.5)
    if stop.is_set():
        return
    from kiosk.auth import StaffAuth, UserError
    from kiosk.commands import _open
    from kiosk.desk import Desk
    from kiosk.forms import VisitorDetails

    storage, cipher = _open(settings)
    auth = StaffAuth(storage, cipher, settings.kiosk.staff_session_hours)
    kept = settings.data_dir / "demo-staff-totp.txt"  # the demo's own secret, shown again on later runs
    try:
        secret: str | None = auth.add_user(DEMO_USER, "reception", DEMO_PASSWORD)
        kept.write_text(secret or "", encoding="utf-8")
        kept.chmod(0o600)
    except UserError:
        secret = kept.read_text(encoding="utf-8").strip() if kept.exists() else None
    desk = Desk(settings, storage, cipher)
    codes = []
    if not desk.expected_today():
        start = utcnow()
        for name, company, host in EXPECTED:
            visit = desk.pre_register(VisitorDetails(name, company, host, "meeting", None, None), start,
                                      start + timedelta(hours=4), "demo")
            codes.append(f"{visit.invite_code} ({name})")
    else:
        codes = [f"{v.invite_code} ({v.name})" for v in desk.expected_today()]
    storage.db.conn.close()
    click.echo(f"\n  Kiosk:             {url}  (check in, or use an invite code: {', '.join(codes)})")
    click.echo(f"  Reception console: {url}staff  (user {DEMO_USER}, password {DEMO_PASSWORD}")
    if secret:
        click.echo(f"                     TOTP secret {secret}; a code: .venv/bin/sitewarden kiosk totp {secret})")
    else:
        click.echo(f"                     TOTP secret lost: delete {settings.data_dir} to start afresh)")
    click.echo("  Watchlist names to try: Mallory Example, Eve Eavesdropper\n")
