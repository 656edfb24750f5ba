"""The kiosk in a real browser: Playwright drives Debian's Chromium against `sitewarden run kiosk`.

Chromium's fake camera (`--use-fake-device-for-media-stream`) stands in for the kiosk's webcam: there is
no camera on this machine. Screenshots are kept under each test's tmp dir.
"""

from __future__ import annotations

import re
import shutil
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
from conftest import SITE, kiosk_config, wait_until, write_config
from playwright.sync_api import Browser, Page, expect, sync_playwright

from edge.config import load_settings
from edge.events import utcnow

CHROMIUM = "/usr/bin/chromium"
XSS = '<img src=x onerror="window.__xss=1">"><script>window.__xss=2</script>'


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail("Chromium is not installed: `make test` installs it when run as root (apt-get install chromium)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream"])
        yield browser
        browser.close()


class RunningKiosk:
    def __init__(self, tmp_path: Path, broker_port: int, service_factory) -> None:
        self.config = write_config(tmp_path / "config.yaml", tmp_path / "data", broker_port, None,
                                   kiosk=kiosk_config(tmp_path))
        self.settings = load_settings(self.config)
        self.url = f"http://127.0.0.1:{self.settings.kiosk.port}"
        self.proc = service_factory(self.config, "kiosk")
        wait_until(self._answers, 20, "the kiosk to answer HTTP")

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/", timeout=2):
                return True
        except OSError:
            return False

    def offline(self):
        """Admin access to its database (as `sitewarden kiosk ...` commands have)."""
        from kiosk.commands import _open

        return _open(self.settings)


@pytest.fixture
def kiosk(tmp_path, mqtt_broker, service_factory) -> RunningKiosk:
    return RunningKiosk(tmp_path, mqtt_broker.port, service_factory)


def shot(page: Page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / "screenshots" / f"{name}.png"
    path.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


def draw_signature(page: Page) -> None:
    pad = page.locator("#signature-pad").bounding_box()
    page.mouse.move(pad["x"] + 30, pad["y"] + 100)
    page.mouse.down()
    for step in range(1, 20):
        page.mouse.move(pad["x"] + 30 + step * 15, pad["y"] + 100 + (25 if step % 2 else -25))
    page.mouse.up()


TEXT = {
    "en": {"lang": "English", "checkin": "Check in", "next": "Next", "accept": "I have read the house rules",
           "take": "Take photo", "use": "Use this photo", "checked_in": "You are checked in",
           "checkout": "Check out", "goodbye": "Goodbye, ", "badge": "Your badge"},
    "nl": {"lang": "Nederlands", "checkin": "Aanmelden", "next": "Volgende", "accept": "Ik heb de huisregels",
           "take": "Foto maken", "use": "Deze foto gebruiken", "checked_in": "U bent aangemeld",
           "checkout": "Afmelden", "goodbye": "Tot ziens, ", "badge": "Uw bezoekerspas"},
}


@pytest.mark.parametrize("lang", ["nl", "en"])
def test_visitor_checks_in_gets_a_badge_and_checks_out(browser, kiosk, client_factory, mqtt_broker, tmp_path, lang):
    watcher = client_factory(mqtt_broker.port)
    watcher.subscribe(f"sitewarden/{SITE}/kiosk/#")
    t = TEXT[lang]
    context = browser.new_context(viewport={"width": 800, "height": 480}, base_url=kiosk.url)
    context.grant_permissions(["camera"], origin=kiosk.url)
    page = context.new_page()
    page.goto("/")
    if lang != "en":
        page.get_by_role("link", name=t["lang"]).click()
    expect(page.locator("html")).to_have_attribute("lang", lang)
    shot(page, tmp_path, f"{lang}-1-welcome")
    page.locator("#start-checkin").click()
    page.locator("#f-name").fill("Fenna Fietsbel")
    page.locator("#f-company").fill("Acme")
    page.locator("#host-search").fill("alv")  # type-ahead, ignoring the accent of José Álvarez
    page.get_by_role("option", name=re.compile("José Álvarez")).click()
    page.locator("#f-purpose").fill("Interview")
    shot(page, tmp_path, f"{lang}-2-checkin")
    page.locator("#checkin-next").click()
    page.locator("#accept").check()
    draw_signature(page)
    shot(page, tmp_path, f"{lang}-3-rules")
    page.locator("#rules-next").click()
    expect(page.locator("#photo-take")).to_be_enabled(timeout=15000)  # the fake camera is running
    page.locator("#photo-take").click()
    page.locator("#photo-use").click()
    expect(page.get_by_role("heading", name=t["checked_in"])).to_be_visible()
    expect(page.locator("#badge-name")).to_have_text("Fenna Fietsbel")
    expect(page.locator(".badge-photo")).to_be_visible()
    code = page.locator("#badge-code").inner_text()
    assert re.fullmatch(r"[2-9A-HJ-NP-Z]{6}", code)
    assert page.evaluate("document.querySelector('.badge-photo').naturalWidth") > 0
    badge = shot(page, tmp_path, f"{lang}-4-badge")
    print(f"badge screenshot: {badge}")
    arrived = wait_until(lambda: watcher.payloads(f"sitewarden/{SITE}/kiosk/reception/visitor_arrived"), 10,
                         "VisitorArrived")
    assert arrived[0]["host_id"] == "jose"
    page.locator("#badge-done").click()
    page.locator("#start-checkout").click()
    page.locator("#f-code").fill(f"SW:{code}")  # as a badge scanner types it
    page.locator("#checkout-submit").click()
    expect(page.locator("#goodbye")).to_have_text(f"{t['goodbye']}Fenna Fietsbel")
    shot(page, tmp_path, f"{lang}-5-goodbye")
    wait_until(lambda: watcher.payloads(f"sitewarden/{SITE}/kiosk/reception/visitor_checked_out"), 10,
               "VisitorCheckedOut")
    context.close()


def test_staff_login_with_totp_sees_markup_as_text_and_roll_call_survives_the_kiosk_going_away(
        browser, kiosk, tmp_path):
    from kiosk.auth import StaffAuth
    from kiosk.desk import Desk
    from kiosk.forms import VisitorDetails

    storage, cipher = kiosk.offline()
    secret = StaffAuth(storage, cipher, 8).add_user("rita", "reception", "correct horse battery")
    desk = Desk(kiosk.settings, storage, cipher)
    desk.pre_register(VisitorDetails(XSS, "<b>Evil</b> BV", "anna", "", None, None), utcnow(),
                      utcnow() + timedelta(hours=1), "test")
    desk.pre_register(VisitorDetails("Eve Cancelled", "Acme", "anna", "", None, None),
                      utcnow() + timedelta(minutes=5), utcnow() + timedelta(hours=1), "test")
    storage.db.conn.close()
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=kiosk.url)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto("/staff")
    expect(page).to_have_url(re.compile(r"/staff/login"))
    page.locator("#f-username").fill("rita")
    page.locator("#f-password").fill("correct horse battery")
    page.locator("#login-submit").click()
    code = pyotp.TOTP(secret).now()
    page.locator("#f-code").fill(code)
    page.locator("#totp-submit").click()
    expect(page.get_by_role("heading", name=re.compile("Visitors"))).to_be_visible()
    expect(page.locator("#expected .name")).to_have_text([XSS, "Eve Cancelled"])
    # Row buttons post through the page's one action form (form= and formaction=, with the CSRF token).
    page.locator("#expected tr", has_text="Eve Cancelled").get_by_role("button", name="Cancel").click()
    expect(page.locator("#expected .name")).to_have_text([XSS])
    assert page.evaluate("window.__xss") is None and not dialogs, "markup in a name ran in the console"
    console_shot = shot(page, tmp_path, "staff-console-xss")
    print(f"console screenshot: {console_shot}")
    # A replayed code is refused, in a second browser.
    other = browser.new_context(base_url=kiosk.url)
    p2 = other.new_page()
    p2.goto("/staff/login")
    p2.locator("#f-username").fill("rita")
    p2.locator("#f-password").fill("correct horse battery")
    p2.locator("#login-submit").click()
    p2.locator("#f-code").fill(code)
    p2.locator("#totp-submit").click()
    expect(p2.locator(".alert")).to_contain_text("used already")
    other.close()
    # The expected visitor arrives and checks in with the invite code, in another browser.
    visitor = browser.new_context(base_url=kiosk.url)
    kiosk_page = visitor.new_page()
    code = page.locator("#expected .code").inner_text()
    kiosk_page.goto(f"/invite/{code}")
    kiosk_page.locator("#invite-confirm").click()
    kiosk_page.locator("#accept").check()
    draw_signature(kiosk_page)
    kiosk_page.locator("#rules-next").click()
    kiosk_page.locator("#photo-skip").click()
    expect(kiosk_page.locator("#badge-name")).to_have_text(XSS)
    assert kiosk_page.evaluate("window.__xss") is None
    visitor.close()
    page.goto("/staff/evacuation")
    assert page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    page.reload()  # now controlled by the service worker, which keeps this copy
    expect(page.locator("#roll-call .name")).to_have_text(XSS)
    kiosk.proc.stop()
    page.reload()
    expect(page.locator("#roll-call .name")).to_have_text(XSS)
    expect(page.locator("#offline-note")).to_be_visible()
    shot(page, tmp_path, "roll-call-offline")
    context.close()
