"""The kiosk over HTTP (TestClient on the real app) with a real mosquitto broker: visitor flow, bad input,
the reception console, privacy jobs and commands."""

from __future__ import annotations

import base64
import re
import sqlite3
from datetime import timedelta

import pyotp
from conftest import SITE, KioskSite, query, wait_until

from edge.events import utcnow
from kiosk.desk import Desk

PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(200)).decode()
JPEG = "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8\xff\xe0" + bytes(500)).decode()
XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def walk_in(site: KioskSite, name: str = "Bea Bezoeker", host: str = "anna", company: str = "Acme",
            photo: str | None = None, sign: bool = True, **extra: str) -> str:
    """A walk-in check-in through every step; returns the badge page's HTML."""
    csrf = site.csrf()
    r = site.client.post("/checkin", data={"csrf": csrf, "name": name, "company": company, "host_id": host, **extra},
                         follow_redirects=False)
    assert r.status_code == 303, r.text[:500]
    token = r.headers["location"].split("/")[2]
    r = site.client.get(f"/v/{token}/next", follow_redirects=False)
    if r.headers["location"].endswith("/rules"):
        assert sign, "house rules asked again"
        r = site.client.post(f"/v/{token}/rules", data={"csrf": csrf, "accept": "yes", "signature": PNG},
                             follow_redirects=False)
        assert r.headers["location"] == f"/v/{token}/photo"
    else:
        assert not sign, "house rules were not asked"
    data = {"csrf": csrf, "photo": photo} if photo else {"csrf": csrf, "skip": "yes"}
    r = site.client.post(f"/v/{token}/photo", data=data, follow_redirects=False)
    assert r.headers["location"] == f"/v/{token}/badge"
    page = site.client.get(f"/v/{token}/badge")
    assert page.status_code == 200
    return page.text


def badge_code(page: str) -> str:
    return re.search(r'id="badge-code">(\w+)<', page).group(1)


def staff_login(site: KioskSite, username: str = "anna", role: str = "reception") -> str:
    secret = site.auth.add_user(username, role, "correct horse battery")
    csrf = site.csrf("/staff/login")
    r = site.client.post("/staff/login", data={"csrf": csrf, "username": username,
                                               "password": "correct horse battery"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/staff/totp")
    r = site.client.post("/staff/totp", data={"csrf": csrf, "code": pyotp.TOTP(secret).now()},
                         follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/staff", r.text[:300]
    return secret


def staff_csrf(site: KioskSite) -> str:
    page = site.client.get("/staff")
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def test_walk_in_check_in_badge_and_check_out_publish_facts(kiosk_site, client_factory, mqtt_broker):
    watcher = client_factory(mqtt_broker.port)
    watcher.subscribe(f"sitewarden/{SITE}/kiosk/#")
    page = walk_in(kiosk_site, name="Bea Bezoeker", photo=JPEG)
    assert "Bea Bezoeker" in page and "Anna de Vries" in page and "<svg" in page
    code = badge_code(page)
    arrived = wait_until(lambda: watcher.payloads(f"sitewarden/{SITE}/kiosk/reception/visitor_arrived"), 10,
                         "VisitorArrived on the broker")
    assert arrived[0]["host_id"] == "anna" and arrived[0]["checked_in_by"] == "kiosk"
    assert "Bea" not in str(arrived[0]), "personal data in a fact"
    visit = kiosk_site.desk.get(arrived[0]["visit_id"])
    assert visit.state == "on_site" and visit.has_photo and visit.rules_version == "1"
    assert kiosk_site.desk.signature(visit.id).startswith(b"\x89PNG")
    r = kiosk_site.client.post("/checkout", data={"csrf": kiosk_site.csrf("/checkout"), "code": f"SW:{code}"})
    assert r.status_code == 200 and "Goodbye, Bea Bezoeker" in r.text
    out = wait_until(lambda: watcher.payloads(f"sitewarden/{SITE}/kiosk/reception/visitor_checked_out"), 10,
                     "VisitorCheckedOut")
    assert out[0]["visit_id"] == visit.id and out[0]["checked_out_by"] == "kiosk"
    r = kiosk_site.client.post("/checkout", data={"csrf": kiosk_site.csrf("/checkout"), "code": code})
    assert r.status_code == 404 and "No visit with this code is checked in" in r.text


def test_pages_follow_the_chosen_language_and_dates_are_local(kiosk_site):
    r = kiosk_site.client.get("/lang/nl?next=/checkin", follow_redirects=False)
    assert r.headers["location"] == "/checkin" and "sw_lang=nl" in r.headers["set-cookie"]
    page = kiosk_site.client.get("/checkin")
    assert '<html lang="nl">' in page.text and "Bij wie komt u op bezoek?" in page.text
    r = kiosk_site.client.get("/lang/nl?next=//evil.example/x", follow_redirects=False)
    assert r.headers["location"] == "/"
    page = walk_in(kiosk_site)
    assert "Uw bezoekerspas" in page and "Geldig tot" in page
    months = ["januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus", "september", "oktober",
              "november", "december"]
    assert any(m in page for m in months), "the date is not written in Dutch"


def test_house_rules_are_asked_again_only_on_a_new_version_or_after_valid_days(kiosk_site):
    walk_in(kiosk_site, name="Rita Return", email="rita@example.invalid", sign=True)
    walk_in(kiosk_site, name="rita  RETURN", email="Rita@example.invalid", sign=False)  # same person, same version
    walk_in(kiosk_site, name="Rita Return", email="other@example.invalid", sign=True)  # someone else
    later = Desk(kiosk_site.settings, kiosk_site.service.producer, kiosk_site.service.cipher,
                 clock=lambda: utcnow() + timedelta(days=31))
    visit = later.get(later.start_walk_in(later_details("Rita Return", "rita@example.invalid"), "en").visit_id)
    assert later.needs_rules(visit), "signed 31 days ago with valid_days 30, yet not asked again"
    v2 = kiosk_site.settings.kiosk.house_rules.model_copy(update={"version": "2"})
    settings = kiosk_site.settings.model_copy(update={"kiosk": kiosk_site.settings.kiosk.model_copy(
        update={"house_rules": v2})})
    desk = Desk(settings, kiosk_site.service.producer, kiosk_site.service.cipher)
    visit = desk.get(desk.start_walk_in(later_details("Rita Return", "rita@example.invalid"), "en").visit_id)
    assert desk.needs_rules(visit), "a new house-rules version was not asked for"


def later_details(name: str, email: str):
    from kiosk.forms import VisitorDetails

    return VisitorDetails(name=name, company="", host_id="anna", purpose="", email=email, phone=None)


def test_invite_code_checks_in_with_one_tap(kiosk_site, client_factory, mqtt_broker):
    watcher = client_factory(mqtt_broker.port)
    watcher.subscribe(f"sitewarden/{SITE}/kiosk/#")
    visit = kiosk_site.desk.pre_register(later_details("Ivo Invited", "ivo@example.invalid"), utcnow(),
                                         utcnow() + timedelta(hours=2), "test")
    page = kiosk_site.client.get(f"/invite/{visit.invite_code.lower()}")
    assert "Welcome, Ivo Invited" in page.text and "Anna de Vries" in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = kiosk_site.client.post(f"/invite/{visit.invite_code}", data={"csrf": csrf}, follow_redirects=True)
    assert "House rules" in r.text
    token = re.search(r'action="/v/([^/]+)/rules"', r.text).group(1)
    kiosk_site.client.post(f"/v/{token}/rules", data={"csrf": csrf, "accept": "yes", "signature": PNG})
    kiosk_site.client.post(f"/v/{token}/photo", data={"csrf": csrf, "skip": "yes"})
    assert kiosk_site.desk.get(visit.id).state == "on_site"
    arrived = wait_until(lambda: watcher.payloads(f"sitewarden/{SITE}/kiosk/reception/visitor_arrived"), 10,
                         "VisitorArrived")
    assert arrived[0]["pre_registered"] is True
    again = kiosk_site.client.get(f"/invite/{visit.invite_code}")
    assert again.status_code == 404 and "not valid today" in again.text


def test_watchlist_holds_check_in_with_a_neutral_page(kiosk_site, client_factory, mqtt_broker):
    watcher = client_factory(mqtt_broker.port)
    watcher.subscribe(f"sitewarden/{SITE}/kiosk/#")
    csrf = kiosk_site.csrf()
    r = kiosk_site.client.post("/checkin", data={"csrf": csrf, "name": "JOSE VAN-DER-BERG", "host_id": "ravi"},
                               follow_redirects=True)
    assert r.status_code == 200 and "Reception will help you in a moment." in r.text
    assert "watch" not in r.text.lower() and "deny" not in r.text.lower()
    fact = wait_until(lambda: watcher.payloads(f"sitewarden/{SITE}/kiosk/reception/watchlist_matched"), 10,
                      "WatchlistMatched")[0]
    assert fact["entry"] == "line 3" and "jose" not in str(fact).lower()
    assert not watcher.payloads(f"sitewarden/{SITE}/kiosk/reception/visitor_arrived")
    visit = kiosk_site.desk.get(fact["visit_id"])
    assert visit.state == "held"
    staff_login(kiosk_site)
    console = kiosk_site.client.get("/staff").text
    assert "JOSE VAN-DER-BERG" in console and "held: watchlist (line 3)" in console
    r = kiosk_site.client.post(f"/staff/visits/{visit.id}/refuse", data={"csrf": staff_csrf(kiosk_site)},
                               follow_redirects=False)
    assert r.status_code == 303 and kiosk_site.desk.get(visit.id).state == "refused"


def test_bad_input_is_refused_in_the_visitors_language_and_nothing_is_saved(kiosk_site):
    def count() -> int:
        return query(kiosk_site.db_path, "SELECT count(*) FROM visits")[0][0]

    before = count()
    kiosk_site.client.get("/lang/nl")
    csrf = kiosk_site.csrf()
    r = kiosk_site.client.post("/checkin", data={"csrf": csrf, "name": "x" * 101, "host_id": "anna"})
    assert r.status_code == 400 and "Dit is te lang (hoogstens 100 tekens)." in r.text
    r = kiosk_site.client.post("/checkin", data={"csrf": csrf, "name": "Eve", "host_id": "anna", "is_admin": "1"})
    assert r.status_code == 400 and "Het formulier bevatte velden die het niet kent (is_admin)" in r.text
    r = kiosk_site.client.post("/checkin", data={"csrf": csrf, "name": "Eve", "host_id": "nobody"})
    assert r.status_code == 400 and "Kies uw gastheer of gastvrouw uit de lijst." in r.text
    r = kiosk_site.client.post("/checkin", data={"csrf": "forged", "name": "Eve", "host_id": "anna"})
    assert r.status_code == 403 and "Probeer het opnieuw" in r.text
    r = kiosk_site.client.post("/checkin", content=b"name=" + b"x" * (4 * 1024 * 1024),
                               headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413
    r = kiosk_site.client.post("/checkin", data={"csrf": csrf, "name": XSS, "host_id": "anna", "email": "bad"})
    assert r.status_code == 400 and XSS not in r.text and "&lt;script&gt;" in r.text
    assert count() == before, "a refused form left a row behind"
    counters = kiosk_site.service.app.state.counters.refused
    assert counters["too_large"] == 1 and counters["unknown_fields"] == 1 and counters["csrf"] == 1


def test_markup_in_a_name_shows_as_text_on_badge_and_console(kiosk_site):
    page = walk_in(kiosk_site, name=XSS, company="<b>bold</b>")
    assert XSS not in page and "&lt;script&gt;" in page and "<b>bold</b>" not in page
    staff_login(kiosk_site)
    for path in ("/staff", "/staff/evacuation"):
        html = kiosk_site.client.get(path).text
        assert XSS not in html and "&lt;script&gt;alert(" in html, path
    assert "script-src 'self'" in kiosk_site.client.get("/staff").headers["content-security-policy"]


def test_signature_and_photo_must_be_real_images(kiosk_site):
    csrf = kiosk_site.csrf()
    r = kiosk_site.client.post("/checkin", data={"csrf": csrf, "name": "Sam", "host_id": "anna"},
                               follow_redirects=False)
    token = r.headers["location"].split("/")[2]
    r = kiosk_site.client.post(f"/v/{token}/rules", data={"csrf": csrf, "accept": "yes",
                                                          "signature": "data:image/png;base64,QUJD"})
    assert r.status_code == 400 and "could not be read" in r.text
    r = kiosk_site.client.post(f"/v/{token}/rules", data={"csrf": csrf, "signature": PNG})
    assert r.status_code == 400 and "accept the house rules" in r.text
    r = kiosk_site.client.get(f"/v/{token}/photo", follow_redirects=False)
    assert r.headers["location"] == f"/v/{token}/rules", "the photo step was reachable without signing"
    kiosk_site.client.post(f"/v/{token}/rules", data={"csrf": csrf, "accept": "yes", "signature": PNG})
    r = kiosk_site.client.post(f"/v/{token}/photo", data={"csrf": csrf, "photo": PNG})
    assert r.status_code == 400 and "photo could not be read" in r.text
    assert kiosk_site.desk.flow_visit(token).state == "in_progress"


def test_staff_login_needs_password_and_a_fresh_totp_code_and_is_rate_limited(kiosk_site):
    secret = kiosk_site.auth.add_user("rita", "reception", "correct horse battery")
    assert kiosk_site.client.get("/staff", follow_redirects=False).headers["location"].startswith("/staff/login")
    csrf = kiosk_site.csrf("/staff/login")
    r = kiosk_site.client.post("/staff/login", data={"csrf": csrf, "username": "rita",
                                                     "password": "correct horse battery"}, follow_redirects=False)
    cookie = r.headers["set-cookie"]
    assert "sw_staff=" in cookie and "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert kiosk_site.client.get("/staff", follow_redirects=False).status_code == 303, "password alone let in"
    code = pyotp.TOTP(secret).now()
    r = kiosk_site.client.post("/staff/totp", data={"csrf": csrf, "code": code}, follow_redirects=False)
    assert r.headers["location"] == "/staff"
    assert kiosk_site.client.get("/staff").status_code == 200
    kiosk_site.client.cookies.clear()
    csrf = kiosk_site.csrf("/staff/login")
    kiosk_site.client.post("/staff/login", data={"csrf": csrf, "username": "rita", "password": "correct horse battery"})
    r = kiosk_site.client.post("/staff/totp", data={"csrf": csrf, "code": code})
    assert r.status_code == 401 and "used already" in r.text
    for _ in range(5):
        kiosk_site.client.post("/staff/login", data={"csrf": csrf, "username": "rita", "password": "wrong"})
    r = kiosk_site.client.post("/staff/login", data={"csrf": csrf, "username": "rita",
                                                     "password": "correct horse battery"})
    assert r.status_code == 429 and "Too many tries" in r.text


def test_roles_are_checked_on_every_staff_route(kiosk_site):
    walk_in(kiosk_site, name="Vera Visitor")
    visit = kiosk_site.desk.on_site()[0]
    staff_login(kiosk_site, "fred", "facilities")
    console = kiosk_site.client.get("/staff")
    assert console.status_code == 200 and "Vera Visitor" in console.text and "formaction" not in console.text
    assert kiosk_site.client.get("/staff/evacuation").status_code == 200
    assert kiosk_site.client.get("/staff/expected").status_code == 403
    assert kiosk_site.client.get("/staff/audit").status_code == 403
    r = kiosk_site.client.post(f"/staff/visits/{visit.id}/checkout", data={"csrf": staff_csrf(kiosk_site)})
    assert r.status_code == 403 and kiosk_site.desk.get(visit.id).state == "on_site"
    # The console's rows are kept between reloads, by the reader's rights too: reception gets the buttons.
    staff_login(kiosk_site, "rita", "reception")
    assert f'formaction="/staff/visits/{visit.id}/checkout"' in kiosk_site.client.get("/staff").text


def test_reception_checks_out_pre_registers_and_imports_with_an_audit_trail(kiosk_site):
    walk_in(kiosk_site, name="Olga Overstay")
    visit = kiosk_site.desk.on_site()[0]
    staff_login(kiosk_site, "anna", "reception")
    csrf = staff_csrf(kiosk_site)
    r = kiosk_site.client.post(f"/staff/visits/{visit.id}/checkout", data={"csrf": "wrong"})
    assert r.status_code == 403 and kiosk_site.desk.get(visit.id).state == "on_site"
    r = kiosk_site.client.post(f"/staff/visits/{visit.id}/checkout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and kiosk_site.desk.get(visit.id).checked_out_by == "reception"
    today = utcnow().astimezone(kiosk_site.desk.tz).strftime("%Y-%m-%d")
    r = kiosk_site.client.post("/staff/expected", data={"csrf": csrf, "name": "Piet Planned", "host_id": "ravi",
                                                        "start": f"{today} 23:00"})
    assert r.status_code == 200 and "Visit registered for Piet Planned" in r.text
    invite = kiosk_site.client.get(re.search(r'id="created-invite" href="([^"]+)"', r.text).group(1))
    code = re.search(r'id="invite-code">([A-Z0-9]+)<', invite.text).group(1)
    assert invite.status_code == 200 and "<svg" in invite.text and "Piet Planned" in invite.text
    # A scanner at the kiosk's invite field types the QR code's text: the prefix and the code.
    r = kiosk_site.client.post("/invite", data={"csrf": kiosk_site.csrf("/invite"), "code": f"SW:{code}"})
    assert r.status_code == 200 and "invite-confirm" in r.text and "Piet Planned" in r.text
    bad_csv = f"name,host_id,start\nGood Row,anna,{today} 23:00\nBad Row,nobody,{today} 23:00\n"
    r = kiosk_site.client.post("/staff/expected/import", data={"csrf": csrf},
                               files={"file": ("v.csv", bad_csv.encode(), "text/csv")})
    assert r.status_code == 400 and "Nothing was imported. Line 3" in r.text
    good_csv = f"name,company,host_id,start\nKees Koper,Acme,anna,{today} 23:30\nLies Lamers,,jose,{today} 23:45\n"
    r = kiosk_site.client.post("/staff/expected/import", data={"csrf": csrf},
                               files={"file": ("v.csv", good_csv.encode(), "text/csv")})
    assert r.status_code == 200 and "2 visits imported." in r.text
    names = {v.name for v in kiosk_site.desk.expected_today()}
    assert {"Piet Planned", "Kees Koper", "Lies Lamers"} <= names and "Good Row" not in names
    actions = [r[0] for r in query(kiosk_site.db_path, "SELECT action FROM audit WHERE actor = 'anna'")]
    assert "check_out" in actions and actions.count("pre_register") == 3 and "login" in actions
    details = " ".join(r[0] for r in query(kiosk_site.db_path, "SELECT actor || action || detail FROM audit"))
    assert "Olga" not in details and "Piet" not in details


def test_overstay_end_of_day_and_anonymizing(kiosk_site, client_factory, mqtt_broker):
    watcher = client_factory(mqtt_broker.port)
    watcher.subscribe(f"sitewarden/{SITE}/kiosk/#")
    walk_in(kiosk_site, name="Otto Overtime")
    visit = kiosk_site.desk.on_site()[0]
    service = kiosk_site.service
    late = Desk(kiosk_site.settings, service.producer, service.cipher,
                clock=lambda: visit.expected_end + timedelta(minutes=31))
    assert late.report_overstays() == 1 and late.report_overstays() == 0
    fact = wait_until(lambda: watcher.payloads(f"sitewarden/{SITE}/kiosk/reception/visitor_overstayed"), 10,
                      "VisitorOverstayed")[0]
    assert fact["visit_id"] == visit.id
    start, _ = kiosk_site.desk.local_day(visit.checked_in_at)
    after_eod = Desk(kiosk_site.settings, service.producer, service.cipher,
                     clock=lambda: start + timedelta(hours=20, minutes=1))
    if visit.checked_in_at < start + timedelta(hours=20):
        assert after_eod.end_of_day() == 1 and after_eod.end_of_day() == 0
        assert kiosk_site.desk.get(visit.id).checked_out_by == "end_of_day"
    else:  # checked in after 20:00 today: the run is for tomorrow evening
        tomorrow = Desk(kiosk_site.settings, service.producer, service.cipher,
                        clock=lambda: start + timedelta(days=1, hours=20, minutes=1))
        assert tomorrow.end_of_day() == 1
    future = Desk(kiosk_site.settings, service.producer, service.cipher, clock=lambda: utcnow() + timedelta(days=31))
    assert future.anonymize_old() == 1
    gone = kiosk_site.desk.get(visit.id)
    assert gone.anonymized and gone.name == "" and not gone.has_photo
    row = query(kiosk_site.db_path, "SELECT name_enc, signature_enc, person_index FROM visits WHERE id = ?",
                (visit.id,))[0]
    assert row == (None, None, None)


def test_erasure_removes_a_person_and_audits_without_their_name(kiosk_site):
    walk_in(kiosk_site, name="Erik Erase")
    walk_in(kiosk_site, name="erik   ERASE", sign=False)  # the same person: signed already
    walk_in(kiosk_site, name="Someone Else")
    assert kiosk_site.desk.erase_person("Erik Erase", "dpo") == 2
    assert [v.name for v in kiosk_site.desk.on_site()] == ["Someone Else"]
    entry = query(kiosk_site.db_path, "SELECT actor, action, detail FROM audit WHERE action = 'erase_person'")
    assert entry == [("dpo", "erase_person", "2 visits erased")]


def test_a_thousand_stored_names_are_not_in_the_database_file(kiosk_site):
    names = [f"Zq{i:04d}visitor Xylofoon{i:04d}" for i in range(1000)]
    for name in names:
        kiosk_site.desk.pre_register(later_details(name, f"{name.split()[0].lower()}@example.invalid"), utcnow(),
                                     utcnow() + timedelta(hours=1), "test")
    conn = sqlite3.connect(kiosk_site.db_path)
    conn.execute("PRAGMA wal_checkpoint(FULL)")
    conn.close()
    blob = b"".join(p.read_bytes() for p in kiosk_site.db_path.parent.glob("kiosk.db*"))
    found = [n for n in names if n.encode() in blob or n.split()[1].encode() in blob]
    assert not found, f"{len(found)} names readable in the database file, e.g. {found[:3]}"
    stored = {v.name for v in kiosk_site.desk.expected_today()}
    assert set(names) <= stored, "the names were not stored (or do not open again)"


def test_erase_command_while_the_kiosk_runs_removes_the_person_from_the_console(kiosk_site):
    """The admin command writes through its own connection; the running console must not keep showing them."""
    from click.testing import CliRunner

    from edge.cli import cli

    walk_in(kiosk_site, name="Erik Erase", email="erik@example.invalid")
    walk_in(kiosk_site, name="Kees Keep")
    staff_login(kiosk_site, "anna", "reception")
    assert "Erik Erase" in kiosk_site.client.get("/staff").text
    runner = CliRunner()
    args = ["--config", str(kiosk_site.config), "kiosk", "erase", "--name", "ERIK  érase", "--by", "dpo 2026-7"]
    result = runner.invoke(cli, args, obj={})
    assert result.exit_code == 0 and "1 visit(s) erased" in result.output, result.output
    page = kiosk_site.client.get("/staff").text
    assert "Erik Erase" not in page and "Kees Keep" in page
    again = runner.invoke(cli, args, obj={})
    assert again.exit_code == 1 and "no visits found for 'ERIK  érase'" in again.output
    entries = query(kiosk_site.db_path, "SELECT actor, detail FROM audit WHERE action = 'erase_person'")
    assert entries == [("dpo 2026-7", "1 visits erased"), ("dpo 2026-7", "0 visits erased")]


def test_key_rotation_reencrypts_everything_and_keeps_it_readable(tmp_path, mqtt_broker):
    from click.testing import CliRunner

    from edge.cli import cli
    from kiosk.service import KioskService, service_lock

    site = KioskSite(tmp_path, mqtt_broker.port, start_producer=False)
    walk_in(site, name="Rosa Rotate", email="rosa@example.invalid")
    secret = site.auth.add_user("admin", "admin", "correct horse battery")
    old_key = site.service.cipher.ring.current
    site.close()
    site.service.producer.db.conn.close()
    runner = CliRunner()
    with service_lock(site.settings):  # as if the kiosk service were running
        refused = runner.invoke(cli, ["--config", str(site.config), "kiosk", "rotate-key"], obj={})
    assert refused.exit_code != 0 and "stop it first" in refused.output
    result = runner.invoke(cli, ["--config", str(site.config), "kiosk", "rotate-key"], obj={})
    assert result.exit_code == 0, result.output
    service = KioskService(site.settings)
    try:
        ring = service.cipher.ring
        assert ring.current != old_key and list(ring.keys) == [ring.current]
        visit = service.desk.on_site()[0]
        assert visit.name == "Rosa Rotate" and service.desk.signature(visit.id).startswith(b"\x89PNG")
        assert not service.desk.needs_rules(visit), "the blind index was not recomputed under the new key"
        token = service.auth.check_password("admin", "correct horse battery")
        assert service.auth.check_totp(token, pyotp.TOTP(secret).now())
        blobs = [b[0] for b in query(site.db_path, "SELECT name_enc FROM visits")]
        assert blobs and all(service.cipher.key_id_of(b) == ring.current for b in blobs)
    finally:
        service.producer.db.conn.close()


def test_check_in_while_the_broker_is_down_is_announced_when_it_is_back(kiosk_site, client_factory, mqtt_broker):
    """The broker is stopped for real; the check-in completes, and VisitorArrived goes out once it returns."""
    wait_until(lambda: kiosk_site.service.producer.bus.connected.is_set(), 10, "kiosk connected to the broker")
    mqtt_broker.stop()
    wait_until(lambda: not kiosk_site.service.producer.bus.connected.is_set(), 10, "kiosk to notice the broker is gone")
    page = walk_in(kiosk_site, name="Bram Brokerless")
    assert "You are checked in" in page
    assert kiosk_site.service.producer.pending() == 1
    mqtt_broker.start()
    watcher = client_factory(mqtt_broker.port)
    watcher.subscribe(f"sitewarden/{SITE}/kiosk/#")
    arrived = wait_until(lambda: watcher.payloads(f"sitewarden/{SITE}/kiosk/reception/visitor_arrived"), 30,
                         "VisitorArrived after the broker came back")
    visit = kiosk_site.desk.on_site()[0]
    assert [a["visit_id"] for a in arrived] == [visit.id]
    wait_until(lambda: kiosk_site.service.producer.pending() == 0, 10, "the outbox row to be acknowledged")
