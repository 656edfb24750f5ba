"""`sitewarden kiosk user disable|enable|remove|reset-password|reset-2fa`: each ends the account's sessions where
it should, works against the real app's sign-in, and leaves an audit row naming the OS user and the note."""

from __future__ import annotations

import getpass
import re
from datetime import datetime

import pyotp
import pytest
from click.testing import CliRunner
from conftest import KioskSite, query
from test_kiosk_web import staff_login

from edge.cli import cli

PASSWORD = "correct horse battery"


def kiosk_cli(site: KioskSite, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--config", str(site.config), "kiosk", "user", *args], obj={})
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def signed_in(site: KioskSite) -> bool:
    return site.client.get("/staff", follow_redirects=False).status_code == 200


def password_ok(site: KioskSite, username: str, password: str) -> bool:
    csrf = site.csrf("/staff/login")
    r = site.client.post("/staff/login", data={"csrf": csrf, "username": username, "password": password},
                         follow_redirects=False)
    return r.status_code == 303


def audit(site: KioskSite, action: str) -> list[tuple[str, str]]:
    return query(site.db_path, "SELECT actor, detail FROM audit WHERE action = ?", (action,))


def test_disable_ends_sessions_at_once_and_enable_lets_the_user_back(kiosk_site):
    staff_login(kiosk_site, "anna")
    assert signed_in(kiosk_site)
    code, out = kiosk_cli(kiosk_site, "disable", "anna", "--by", "ticket 311")
    assert code == 0 and "disabled" in out
    assert not signed_in(kiosk_site), "a disabled user's session went on"
    assert not password_ok(kiosk_site, "anna", PASSWORD)
    assert audit(kiosk_site, "disable_user") == [(f"os:{getpass.getuser()}", "anna (ticket 311)")]
    code, _ = kiosk_cli(kiosk_site, "enable", "anna")
    assert code == 0 and password_ok(kiosk_site, "anna", PASSWORD)
    assert audit(kiosk_site, "enable_user") == [(f"os:{getpass.getuser()}", "anna")]


def test_remove_deletes_the_account_and_its_sessions(kiosk_site):
    staff_login(kiosk_site, "anna")
    code, out = kiosk_cli(kiosk_site, "remove", "anna", "--by", "left")
    assert code == 0 and "removed" in out
    assert not signed_in(kiosk_site)
    assert query(kiosk_site.db_path, "SELECT count(*) FROM staff_sessions") == [(0,)]
    assert not password_ok(kiosk_site, "anna", PASSWORD)
    assert audit(kiosk_site, "remove_user") == [(f"os:{getpass.getuser()}", "anna (left)")]
    code, out = kiosk_cli(kiosk_site, "remove", "anna")
    assert code == 1 and "no user 'anna'" in out


def test_reset_password_prints_a_one_time_password_that_works_and_the_old_one_does_not(kiosk_site):
    staff_login(kiosk_site, "anna")
    code, out = kiosk_cli(kiosk_site, "reset-password", "anna", "--by", "forgot")
    assert code == 0 and not signed_in(kiosk_site)
    one_time = out.split("one-time password: ")[1].strip()
    assert len(one_time) >= 12
    assert not password_ok(kiosk_site, "anna", PASSWORD)
    assert password_ok(kiosk_site, "anna", one_time)
    assert query(kiosk_site.db_path, "SELECT must_change_password FROM staff_users") == [(1,)]
    assert audit(kiosk_site, "reset_password") == [(f"os:{getpass.getuser()}", "anna (forgot)")]
    assert one_time not in str(query(kiosk_site.db_path, "SELECT * FROM audit"))


def test_reset_2fa_prints_a_new_secret_and_the_old_authenticator_stops_working(kiosk_site):
    old_secret = staff_login(kiosk_site, "anna")
    code, out = kiosk_cli(kiosk_site, "reset-2fa", "anna", "--by", "lost phone")
    assert code == 0 and not signed_in(kiosk_site)
    new_secret = out.split("TOTP secret: ")[1].split()[0]
    assert new_secret != old_secret
    token = kiosk_site.auth.check_password("anna", PASSWORD)
    assert not kiosk_site.auth.check_totp(token, pyotp.TOTP(old_secret).now())
    assert kiosk_site.auth.check_totp(token, pyotp.TOTP(new_secret).now())
    assert audit(kiosk_site, "reset_2fa") == [(f"os:{getpass.getuser()}", "anna (lost phone)")]


@pytest.mark.parametrize("command", ["disable", "enable", "remove", "reset-password", "reset-2fa"])
def test_user_commands_explain_unknown_users_and_end_help_with_an_example(kiosk_site, command):
    code, out = kiosk_cli(kiosk_site, command, "nobody")
    assert code == 1 and "no user 'nobody'" in out
    code, out = kiosk_cli(kiosk_site, command, "--help")
    assert code == 0 and "Example: sitewarden kiosk user" in out


def test_after_a_password_reset_the_user_must_choose_a_new_password_before_anything_else(kiosk_site):
    secret = staff_login(kiosk_site, "anna")
    _, out = kiosk_cli(kiosk_site, "reset-password", "anna")
    one_time = out.split("one-time password: ")[1].strip()
    csrf = kiosk_site.csrf("/staff/login")
    kiosk_site.client.post("/staff/login", data={"csrf": csrf, "username": "anna", "password": one_time})
    totp = pyotp.TOTP(secret)
    r = kiosk_site.client.post("/staff/totp", data={"csrf": csrf, "code": totp.generate_otp(totp.timecode(
        datetime.now()) + 1)}, follow_redirects=False)
    assert r.headers["location"] == "/staff/password"
    assert kiosk_site.client.get("/staff", follow_redirects=False).headers["location"] == "/staff/password"
    page = kiosk_site.client.get("/staff/password")
    form_csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = kiosk_site.client.post("/staff/password", data={"csrf": form_csrf, "password": "short", "again": "short"})
    assert r.status_code == 400 and "at least 12" in r.text
    r = kiosk_site.client.post("/staff/password", data={"csrf": form_csrf, "password": "a brand new secret",
                                                        "again": "a brand new secret"}, follow_redirects=False)
    assert r.status_code == 303 and signed_in(kiosk_site)
    assert password_ok(kiosk_site, "anna", "a brand new secret") and not password_ok(kiosk_site, "anna", one_time)
    assert query(kiosk_site.db_path, "SELECT actor FROM audit WHERE action = 'change_password'") == [("anna",)]


def test_changing_a_password_asks_for_the_current_one_and_ends_the_users_other_sessions(kiosk_site):
    """Someone at a console left signed in must not be able to take the account over by setting a new password;
    the owner changing it (because it may be known) signs out every other session."""
    secret = staff_login(kiosk_site, "anna")
    totp = pyotp.TOTP(secret)
    elsewhere = kiosk_site.auth.check_password("anna", PASSWORD)  # anna signed in at a second PC too
    assert kiosk_site.auth.check_totp(elsewhere, totp.generate_otp(totp.timecode(datetime.now()) + 1))
    page = kiosk_site.client.get("/staff/password")
    assert 'name="current"' in page.text
    form_csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    new = {"csrf": form_csrf, "password": "a brand new secret", "again": "a brand new secret"}
    for current in ({}, {"current": "not my password"}):
        r = kiosk_site.client.post("/staff/password", data={**new, **current}, follow_redirects=False)
        assert r.status_code == 401 and "current password is wrong" in r.text, "changed without the current one"
    assert kiosk_site.auth.check_password("anna", PASSWORD) is not None
    assert kiosk_site.auth.session(elsewhere) is not None
    r = kiosk_site.client.post("/staff/password", data={**new, "current": PASSWORD}, follow_redirects=False)
    assert r.status_code == 303 and signed_in(kiosk_site), "the session that changed the password ended"
    assert kiosk_site.auth.session(elsewhere) is None, "another session of the user survived the change"
    assert kiosk_site.auth.check_password("anna", "a brand new secret") is not None
    # The second PC's session and the half sign-in (password stage) the unchanged-password check above made.
    assert audit(kiosk_site, "change_password") == [("anna", "2 other sessions ended")]
