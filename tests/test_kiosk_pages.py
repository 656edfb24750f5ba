"""Kiosk and console pages over HTTP (TestClient on the real app, real broker and database): what one visitor
leaves for the next, times in the site's zone, the audit trail's words, and the language through the login."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from conftest import KioskSite, query
from test_kiosk_web import PNG, badge_code, staff_login, walk_in

# 15:16 UTC is 16:16 in Amsterdam in December: a walk-in's planned 8 hours would run to 00:16, past the site's
# end of day (20:00), when everyone still on site is checked out.
CHECK_IN_UTC = datetime(2026, 12, 4, 15, 16, tzinfo=UTC)


@pytest.fixture
def amsterdam_site(tmp_path, mqtt_broker, monkeypatch) -> Iterator[KioskSite]:
    monkeypatch.setenv("SITEWARDEN_SITE__TIMEZONE", "Europe/Amsterdam")
    site = KioskSite(tmp_path, mqtt_broker.port)
    site.desk.clock = lambda: CHECK_IN_UTC
    yield site
    site.close()


def flow_token(badge_page: str) -> str:
    return re.search(r'action="/v/([^/"]+)/done"', badge_page).group(1)


def test_rules_tick_stays_ticked_when_the_signature_is_missing(kiosk_site):
    csrf = kiosk_site.csrf()
    r = kiosk_site.client.post("/checkin", data={"csrf": csrf, "name": "Tim Tick", "host_id": "anna"},
                               follow_redirects=False)
    token = r.headers["location"].split("/")[2]
    r = kiosk_site.client.post(f"/v/{token}/rules", data={"csrf": csrf, "accept": "yes", "signature": ""})
    assert r.status_code == 400 and "Please sign in the box." in r.text
    assert re.search(r'<input type="checkbox" name="accept"[^>]* checked>', r.text), "the tick was reset"
    r = kiosk_site.client.post(f"/v/{token}/rules", data={"csrf": csrf, "signature": PNG})
    assert r.status_code == 400 and not re.search(r'name="accept"[^>]* checked>', r.text), \
        "a tick the visitor never gave was shown"


def test_host_name_typed_in_full_without_tapping_is_taken(kiosk_site):
    csrf = kiosk_site.csrf()
    r = kiosk_site.client.post("/checkin", data={"csrf": csrf, "name": "Tara Typist", "host_id": "",
                                                 "host_query": "  anna DE vries "}, follow_redirects=False)
    assert r.status_code == 303, r.text[:500]
    visit = kiosk_site.desk.get(query(kiosk_site.db_path, "SELECT id FROM visits")[0][0])
    assert visit.host_id == "anna"
    # Part of a name is not a choice: the page asks again and keeps what was typed.
    r = kiosk_site.client.post("/checkin", data={"csrf": csrf, "name": "Tara Typist", "host_id": "",
                                                 "host_query": "Anna"})
    assert r.status_code == 400 and "Please pick your host from the list." in r.text
    assert 'name="host_query" hidden autocomplete="off"\n           value="Anna"' in r.text


def test_done_ends_the_badge_so_back_and_replays_show_nothing(kiosk_site):
    page = walk_in(kiosk_site, name="Dora Done")
    token = flow_token(page)
    r = kiosk_site.client.get(f"/v/{token}/badge")
    assert r.status_code == 200 and "Dora Done" in r.text
    assert r.headers["cache-control"] == "no-store"
    r = kiosk_site.client.post(f"/v/{token}/done", data={"csrf": kiosk_site.csrf()}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/lang/en?next=/"  # the site's language again
    again = kiosk_site.client.get(f"/v/{token}/badge")
    assert again.status_code == 404
    assert "Dora Done" not in again.text and "Anna de Vries" not in again.text and "badge-code" not in again.text
    assert "Print badge" not in again.text
    assert kiosk_site.client.get(f"/v/{token}/photo.jpg").status_code == 404
    assert kiosk_site.desk.on_site()[0].state == "on_site", "Done checked the visitor out"


def test_visitor_pages_carry_the_idle_return_and_the_badge_twice_as_long(tmp_path, mqtt_broker):
    site = KioskSite(tmp_path, mqtt_broker.port, idle_return_s=45)
    try:
        assert 'data-idle-return-s="45"' in site.client.get("/checkin").text
        assert 'data-idle-return-s="90"' in walk_in(site)
        assert "data-idle-return-s" not in site.client.get("/").text
    finally:
        site.close()


def test_badge_valid_until_and_console_until_agree_in_site_time(amsterdam_site):
    amsterdam_site.client.get("/lang/nl")  # times as 24-hour clock
    page = walk_in(amsterdam_site, name="Vic Valid")
    valid = re.search(r'id="badge-valid">([^<]+)<', page).group(1)
    staff_login(amsterdam_site, "rita", "reception")
    console = amsterdam_site.client.get("/staff").text
    row = re.search(r'<tr class="visit state-on_site".*?</tr>', console, re.S).group(0)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    checked_in, until = cells[3].strip(), cells[4].strip()
    assert checked_in == "16:16", f"check-in shown as {checked_in}, not in Amsterdam time"
    assert valid == until == "20:00", f"badge says {valid}, console says {until}"


def test_audit_records_check_in_and_out_by_visit_id_only(kiosk_site):
    page = walk_in(kiosk_site, name="Aud Itor", company="Secret Co")
    visit_id = kiosk_site.desk.on_site()[0].id
    r = kiosk_site.client.post("/checkout", data={"csrf": kiosk_site.csrf("/checkout"), "code": badge_code(page)})
    assert r.status_code == 200
    rows = query(kiosk_site.db_path, "SELECT actor, action, visit_id, detail FROM audit WHERE action IN "
                                     "('check_in', 'check_out') ORDER BY id")
    assert rows == [("kiosk", "check_in", visit_id, "kiosk"), ("kiosk", "check_out", visit_id, "kiosk")]


def test_audit_page_shows_site_time_and_the_pages_language(amsterdam_site):
    page = walk_in(amsterdam_site, name="Nel Nederlands")
    amsterdam_site.client.post("/checkout", data={"csrf": amsterdam_site.csrf("/checkout"),
                                                  "code": badge_code(page)})
    amsterdam_site.desk.audit("rita", "roll_call", None, "3 on site")
    staff_login(amsterdam_site, "adam", "admin")
    nl = amsterdam_site.client.get("/staff/audit?lang=nl").text
    table = re.search(r'<table class="list" id="audit">.*?</table>', nl, re.S).group(0)
    assert "16:16" in table and "15:16" not in table and "2026-12-04T" not in table, table
    assert "Bezoeker aangemeld" in table and "Bezoeker afgemeld" in table and "bij de kiosk" in table
    assert "3 aanwezig" in table and "on site" not in table and "check_in" not in table
    assert "Nel" not in nl
    en = amsterdam_site.client.get("/staff/audit?lang=en").text
    assert "Visitor checked in" in en and "3 on site" in en and "Europe/Amsterdam" in en


def test_lang_survives_the_redirect_to_login_and_back(kiosk_site):
    secret = kiosk_site.auth.add_user("nina", "reception", "correct horse battery")
    r = kiosk_site.client.get("/staff/expected?lang=nl", follow_redirects=False)
    assert r.status_code == 303
    login = kiosk_site.client.get(r.headers["location"])
    assert '<html lang="nl">' in login.text and "Inloggen" in login.text, login.text[:400]
    nxt = re.search(r'name="next" value="([^"]+)"', login.text).group(1)
    assert nxt == "/staff/expected?lang=nl"
    import pyotp

    csrf = re.search(r'name="csrf" value="([^"]+)"', login.text).group(1)
    r = kiosk_site.client.post("/staff/login", data={"csrf": csrf, "username": "nina", "next": nxt,
                                                     "password": "correct horse battery"}, follow_redirects=False)
    r = kiosk_site.client.get(r.headers["location"])
    assert '<html lang="nl">' in r.text
    r = kiosk_site.client.post("/staff/totp", data={"csrf": csrf, "code": pyotp.TOTP(secret).now(),
                                                    "next": re.search(r'name="next" value="([^"]+)"', r.text).group(1)},
                               follow_redirects=False)
    assert r.headers["location"] == "/staff/expected?lang=nl"
    assert '<html lang="nl">' in kiosk_site.client.get(r.headers["location"]).text


def test_logout_tells_the_browser_to_forget_the_roll_call(kiosk_site):
    walk_in(kiosk_site, name="Rollo Call")
    staff_login(kiosk_site, "rita", "reception")
    r = kiosk_site.client.get("/staff/evacuation")
    key = r.headers["x-roll-call-key"]
    assert re.fullmatch(r"[0-9a-f]{32}", key) and kiosk_site.client.cookies.get("sw_roll") == key
    csrf = re.search(r'name="csrf" value="([^"]+)"', r.text).group(1)
    r = kiosk_site.client.post("/staff/logout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["clear-site-data"] == '"cache", "storage"'
    assert "sw_roll" not in kiosk_site.client.cookies
    r = kiosk_site.client.get("/staff/evacuation", follow_redirects=False)
    assert r.status_code == 303 and "x-roll-call-key" not in r.headers
