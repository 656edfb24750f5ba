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
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError

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
    def __init__(self, tmp_path: Path, broker_port: int, service_factory, **kiosk: object) -> None:
        self.config = write_config(tmp_path / "config.yaml", tmp_path / "data", broker_port, None,
                                   kiosk=kiosk_config(tmp_path, **kiosk))
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


def staff_sign_in(page: Page, username: str, secret: str) -> str:
    """Password, then a fresh TOTP code, on the login page the browser is on; returns the code used."""
    page.locator("#f-username").fill(username)
    page.locator("#f-password").fill("correct horse battery")
    page.locator("#login-submit").click()
    code = pyotp.TOTP(secret).now()
    page.locator("#f-code").fill(code)
    page.locator("#totp-submit").click()
    return code


def draw_signature(page: Page) -> None:
    page.locator("#signature-pad").scroll_into_view_if_needed()
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
    expect(page.locator("html")).to_have_attribute("lang", "en")  # the next visitor starts in the site's language
    if lang != "en":
        page.get_by_role("link", name=t["lang"]).click()
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
    code = staff_sign_in(page, "rita", secret)
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
    sign_and_skip_the_photo(kiosk_page, XSS)
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


def sign_and_skip_the_photo(page: Page, name: str) -> None:
    """From the house rules to the badge of `name`: tick, sign, no photo."""
    page.locator("#accept").check()
    draw_signature(page)
    page.locator("#rules-next").click()
    page.locator("#photo-skip").click()
    expect(page.locator("#badge-name")).to_have_text(name)


def check_in_on_screen(page: Page, name: str) -> None:
    """A walk-in from the welcome page to the badge, as a visitor taps it (no photo)."""
    page.goto("/")
    page.locator("#start-checkin").click()
    page.locator("#f-name").fill(name)
    page.locator("#f-company").fill("Acme")
    page.locator("#host-search").fill("alv")
    page.get_by_role("option", name=re.compile("José Álvarez")).click()
    page.locator("#checkin-next").click()
    sign_and_skip_the_photo(page, name)


def reception_account(kiosk: RunningKiosk) -> str:
    """A reception account made with admin access (as `sitewarden kiosk user add`); returns its TOTP secret."""
    from kiosk.auth import StaffAuth

    storage, cipher = kiosk.offline()
    secret = StaffAuth(storage, cipher, 8).add_user("rita", "reception", "correct horse battery")
    storage.db.conn.close()
    return secret


def settled_html(page: Page) -> str:
    """The page's HTML once its navigation has finished (a redirect or a reload may still be under way)."""
    def read() -> str | None:
        try:
            page.wait_for_load_state()
            return page.content()
        except PlaywrightError as err:
            if "navigating" not in str(err):
                raise
            return None

    return wait_until(read, 15, f"{page.url} to settle")


def everything_kept(page: Page) -> str:
    """The text of every response in this origin's Cache Storage."""
    return page.evaluate("""async () => {
        let all = "";
        for (const name of await caches.keys()) {
            const cache = await caches.open(name);
            for (const request of await cache.keys()) all += await (await cache.match(request)).text();
        }
        return all;
    }""")


def roll_call_kept_offline(browser: Browser, kiosk: RunningKiosk, name: str) -> tuple[BrowserContext, Page]:
    """`name` checks in at the kiosk; reception signs in, opens the roll call, and sees it with the network off."""
    secret = reception_account(kiosk)
    visitor = browser.new_context(base_url=kiosk.url)
    check_in_on_screen(visitor.new_page(), name)
    visitor.close()
    context = browser.new_context(base_url=kiosk.url)
    page = context.new_page()
    page.goto("/staff/evacuation")
    staff_sign_in(page, "rita", secret)
    expect(page.locator("#roll-call .name")).to_have_text(name)
    assert page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    page.reload()  # now controlled by the service worker, which keeps this copy
    expect(page.locator("#roll-call .name")).to_have_text(name)
    context.set_offline(True)
    page.reload()
    expect(page.locator("#roll-call .name")).to_have_text(name)
    expect(page.locator("#offline-note")).to_be_visible()
    assert page.locator("html").get_attribute("data-from-cache") == "yes"
    return context, page


def test_roll_call_is_unreadable_in_the_browser_after_logout_online_and_offline(browser, kiosk, tmp_path):
    context, page = roll_call_kept_offline(browser, kiosk, "Ottilie Offline")  # works offline during the session
    context.set_offline(False)
    page.reload()
    page.get_by_role("button", name=re.compile("Log out")).click()
    expect(page).to_have_url(re.compile(r"/staff/login"))
    fetch_text = "() => fetch('/staff/evacuation').then(r => r.text(), e => 'no answer: ' + e)"
    for offline in (False, True):
        context.set_offline(offline)
        assert "Ottilie" not in everything_kept(page), f"the list is still in Cache Storage (offline={offline})"
        assert "Ottilie" not in page.evaluate(fetch_text), f"a fetch still gets the list (offline={offline})"
        try:
            page.goto("/staff/evacuation")
        except PlaywrightError:
            pass  # offline and nothing kept: the browser's own error page
        assert "Ottilie" not in settled_html(page), f"the page still shows the list (offline={offline})"
    shot(page, tmp_path, "roll-call-after-logout-offline")
    context.close()


def test_back_after_done_shows_nothing_of_the_visitor_and_idle_screens_return_to_welcome(
        browser, tmp_path, mqtt_broker, service_factory):
    kiosk = RunningKiosk(tmp_path, mqtt_broker.port, service_factory, idle_return_s=5)
    context = browser.new_context(viewport={"width": 800, "height": 480}, base_url=kiosk.url)
    page = context.new_page()
    page.goto("/lang/nl")  # this visitor reads Dutch; the next one starts in the site's language (English)
    check_in_on_screen(page, "Bram Backbutton")
    code = page.locator("#badge-code").inner_text()
    page.locator("#badge-done").click()
    expect(page.locator("#start-checkin")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.go_back()
    expect(page.locator("h1")).to_be_visible()
    html = settled_html(page)
    for private in ("Bram Backbutton", "José Álvarez", code):
        assert private not in html, f"{private!r} shown after Back"
    assert page.locator("#print-badge").count() == 0
    shot(page, tmp_path, "back-after-done")
    # A half-filled form goes back to the welcome page by itself, and Back does not bring the typing back.
    page.goto("/checkin")
    page.locator("#f-name").fill("Ida Idle")
    expect(page.locator("#start-checkin")).to_be_visible(timeout=20_000)
    page.go_back()
    expect(page.locator("h1")).to_be_visible()
    assert "Ida Idle" not in settled_html(page)
    page.goto("/checkin")
    expect(page.locator("#f-name")).to_have_value("")
    # The badge page too, a little later, and its check-in is over on the server.
    check_in_on_screen(page, "Bea Badge")
    badge_url = page.url
    expect(page.locator("#start-checkin")).to_be_visible(timeout=30_000)
    page.goto(badge_url)
    assert "Bea Badge" not in settled_html(page)
    context.close()


def test_every_check_in_step_fits_an_800x480_screen(browser, kiosk, tmp_path):
    context = browser.new_context(viewport={"width": 800, "height": 480}, base_url=kiosk.url)
    page = context.new_page()
    page.goto("/lang/nl")  # the longer words

    def on_screen(*selectors: str) -> None:
        assert page.evaluate("window.scrollY") == 0
        for selector in selectors:
            box = page.locator(selector).bounding_box()
            assert box is not None, f"{selector} is not shown on {page.url}"
            fits = box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= 800 and \
                box["y"] + box["height"] <= 480
            assert fits, f"{selector} on {page.url} is at {box}, outside 800x480"

    page.goto("/")
    on_screen("#start-checkin", "#start-invite", "#start-checkout")
    page.locator("#start-checkin").click()
    on_screen("#f-name", "#checkin-next")
    page.locator("#checkin-next").click()  # empty: every error shown
    expect(page.locator(".error").first).to_be_visible()
    on_screen("#checkin-next")
    shot(page, tmp_path, "800x480-checkin-errors")
    page.locator("#f-name").fill("Fleur Fold")
    page.locator("#host-search").fill("ravi")
    page.get_by_role("option", name=re.compile("Ravi Kumar")).click()
    page.locator("#checkin-next").click()
    on_screen("#accept", "#signature-pad", "#rules-next")
    page.locator("#rules-next").click(force=True)  # the browser asks for the tick first
    page.locator("#accept").check()
    page.locator("#rules-next").click()  # no signature: the page comes back with its error
    expect(page.locator(".alert")).to_be_visible()
    on_screen("#accept", "#signature-pad", "#rules-next")
    shot(page, tmp_path, "800x480-rules-error")
    draw_signature(page)
    page.locator("#rules-next").click()
    on_screen("#photo-skip", "#photo-use")
    page.locator("#photo-skip").click()
    on_screen("#badge-done", "#print-badge")
    shot(page, tmp_path, "800x480-badge")
    context.close()


def test_host_typed_in_full_is_kept_and_the_rules_tick_survives_an_error(browser, kiosk):
    context = browser.new_context(viewport={"width": 800, "height": 480}, base_url=kiosk.url)
    page = context.new_page()
    page.goto("/checkin")
    page.locator("#f-name").fill("Tess Typist")
    page.locator("#host-search").fill("anna de vries")  # typed in full, the suggestion never tapped
    page.locator("#checkin-next").click()
    expect(page.locator("#accept")).to_be_visible()
    page.locator("#accept").check()
    page.locator("#rules-next").click()  # not signed
    expect(page.locator(".alert")).to_contain_text("Please sign")
    expect(page.locator("#accept")).to_be_checked()
    draw_signature(page)
    page.locator("#rules-next").click()
    expect(page.locator("#photo-skip")).to_be_visible()
    context.close()


def test_service_worker_serves_the_roll_call_only_while_the_session_marker_lives(browser, kiosk):
    """The worker's own guard, without the logout page's help: the session's marker cookie is gone (expired, or
    cleared by the server's logout answer) while the kiosk cannot be reached."""
    context, page = roll_call_kept_offline(browser, kiosk, "Marta Marker")
    context.clear_cookies(name="sw_roll")
    page.reload()
    assert "Marta" not in settled_html(page), "the worker served the list without a session marker"
    assert "Marta" not in everything_kept(page)
    context.close()


@pytest.mark.parametrize("status", [502, 500])
def test_roll_call_is_still_shown_when_the_kiosk_answers_with_a_server_error(browser, kiosk, status):
    """A TLS proxy in front of a stopped kiosk answers 502, a failing database makes the kiosk answer 500: the
    kept roll call must still be shown then. Route interception stands in for the proxy (context.route, not
    page.route: in Chromium only the context's routes see the service worker's own requests)."""
    context, page = roll_call_kept_offline(browser, kiosk, "Selma Servererror")
    context.set_offline(False)
    context.route("**/staff/evacuation", lambda route: route.fulfill(status=status, body="Bad Gateway"))
    page.reload()
    expect(page.locator("#roll-call .name")).to_have_text("Selma Servererror")
    assert page.locator("html").get_attribute("data-from-cache") == "yes"
    assert "Selma" in everything_kept(page), f"a {status} wiped the kept roll call"
    context.close()


def test_roll_call_copy_is_not_served_offline_once_its_session_has_expired(browser, kiosk):
    """A session that ends without a logout click (it expires) takes the offline copy with it: the marker cookie
    ends with the session, and the worker refuses a copy past the session's end even if a marker is still there."""
    from kiosk.store import iso

    context, page = roll_call_kept_offline(browser, kiosk, "Eddie Expired")
    context.set_offline(False)
    ends = utcnow() + timedelta(seconds=20)
    storage, _ = kiosk.offline()
    with storage.atomic():
        storage.db.execute("UPDATE staff_sessions SET expires_at = ? WHERE stage = 'full'", [iso(ends)])
    storage.db.conn.close()
    page.reload()  # the worker keeps this copy, which ends with the shortened session
    expect(page.locator("#roll-call .name")).to_have_text("Eddie Expired")
    marker = next(c for c in context.cookies() if c["name"] == "sw_roll")
    assert abs(marker["expires"] - ends.timestamp()) < 5, "the roll-call marker outlives the session"
    context.set_offline(True)
    page.reload()
    expect(page.locator("#roll-call .name")).to_have_text("Eddie Expired")  # still within the session
    wait_until(lambda: utcnow() > ends + timedelta(seconds=1), 40, "the session to expire")
    # A marker still there (a browser that kept it): the worker's own check of the session's end must refuse.
    context.add_cookies([{**marker, "expires": (utcnow() + timedelta(hours=1)).timestamp()}])
    page.reload()
    assert "Eddie" not in settled_html(page), "the worker served the list of an expired session offline"
    assert "Eddie" not in everything_kept(page)
    context.close()
