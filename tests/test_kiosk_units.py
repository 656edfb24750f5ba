"""Kiosk building blocks without a web server: field encryption, keyring, name matching, TOTP, catalogs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from jinja2 import Environment

from kiosk.crypto import DecryptError, FieldCipher, KeyFileError, Keyring, load_keyring, write_keyring
from kiosk.forms import check_visitor, data_url
from kiosk.i18n import LOCALE_DIR, translations
from kiosk.text import clean_code, normalize_name
from kiosk.web import make_environments

KIOSK_DIR = Path(__file__).resolve().parent.parent / "kiosk"


def test_sealed_value_opens_only_in_its_own_row_and_column():
    cipher = FieldCipher(Keyring.generate())
    blob = cipher.seal("visits", "name", "row-1", "Anna de Vries")
    assert cipher.open("visits", "name", "row-1", blob) == "Anna de Vries"
    assert b"Anna" not in blob
    with pytest.raises(DecryptError, match="does not open"):
        cipher.open("visits", "name", "row-2", blob)  # moved to another row
    with pytest.raises(DecryptError, match="does not open"):
        cipher.open("visits", "company", "row-1", blob)  # moved to another column
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(DecryptError):
        cipher.open("visits", "name", "row-1", tampered)
    other = FieldCipher(Keyring.generate())
    with pytest.raises(DecryptError, match="lacks"):
        other.open("visits", "name", "row-1", blob)


def test_rotated_keyring_opens_old_values_and_seals_with_the_new_key():
    ring = Keyring.generate()
    old = FieldCipher(ring)
    blob = old.seal("visits", "name", "r", "x")
    rotated = ring.with_new_key()
    new = FieldCipher(rotated)
    assert new.open("visits", "name", "r", blob) == "x"
    assert new.key_id_of(new.seal("visits", "name", "r", "x")) == rotated.current != ring.current
    with pytest.raises(DecryptError):
        FieldCipher(rotated.only_current()).open("visits", "name", "r", blob)


def test_keyring_file_is_private_and_errors_say_what_to_do(tmp_path):
    path = tmp_path / "kiosk.key"
    ring = load_keyring(path, create=True)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert load_keyring(path) == ring
    path.chmod(0o640)
    with pytest.raises(KeyFileError, match=r"chmod 600"):
        load_keyring(path)
    path.chmod(0o600)
    path.write_text("{not json")
    with pytest.raises(KeyFileError, match="not a SiteWarden kiosk keyring"):
        load_keyring(path)
    with pytest.raises(KeyFileError, match="does not exist"):
        load_keyring(tmp_path / "missing.key")
    write_keyring(path, ring)
    assert load_keyring(path) == ring


@pytest.mark.parametrize("typed", ["José van der Berg", "jose van der berg", "JOSÉ VANDERBERG", "José  van-der-Berg",
                                   " jose\tvan der  berg ", "Jose\u0301 van der Berg"])
def test_watchlist_matching_ignores_case_accents_and_spacing(typed):
    assert normalize_name(typed) == "josevanderberg"


def test_different_names_do_not_match():
    assert normalize_name("Jos van der Berg") != normalize_name("José van der Berg")
    assert normalize_name("Straße") == normalize_name("STRASSE")


def test_badge_codes_from_scanner_or_keyboard():
    assert clean_code("SW:ABC234") == "ABC234"
    assert clean_code(" abc-234 ") == "ABC234"
    assert clean_code("sw:abc 234\n") == "ABC234"


def test_visitor_form_limits_and_messages():
    hosts = {"anna": object()}
    details, errors = check_visitor({"name": "  Anna \n de Vries ", "host_id": "anna", "email": "a@b.nl"}, hosts)
    assert details is not None and details.name == "Anna de Vries" and not errors
    details, errors = check_visitor({"name": "x" * 101, "host_id": "nobody", "email": "nope", "phone": "call me"},
                                    hosts)
    assert details is None
    assert set(errors.fields) == {"name", "host_id", "email", "phone"}
    assert errors.fields["name"][1] == {"limit": 100}


def test_data_urls_must_be_the_named_image_type_and_small():
    png = "data:image/png;base64,iVBORw0KGgoAAAA="
    assert data_url(png, "image/png", 1000) is not None
    assert data_url(png, "image/jpeg", 1000) is None
    assert data_url("data:image/png;base64,not base64!", "image/png", 1000) is None
    assert data_url("data:image/png;base64,QUJD", "image/png", 1000) is None  # not a PNG
    assert data_url(png, "image/png", 5) is None


def test_jinja_autoescape_fact_and_ours():
    """Checked fact: Jinja2's select_autoescape escapes only .html/.htm/.xml names; ours also escapes strings."""
    from jinja2 import DictLoader, select_autoescape

    plain = Environment(loader=DictLoader({"a.txt": "{{ x }}", "a.html": "{{ x }}"}), autoescape=select_autoescape())
    assert plain.get_template("a.txt").render(x="<b>") == "<b>"
    assert plain.get_template("a.html").render(x="<b>") == "&lt;b&gt;"
    env = make_environments()["en"]
    assert env.from_string("{{ x }}").render(x="<script>") == "&lt;script&gt;"
    templates = list((KIOSK_DIR / "templates").iterdir())
    assert templates and all(t.suffix == ".html" for t in templates)


def test_dutch_catalog_translates_every_message(tmp_path):
    """Every message in the templates and code has a Dutch translation, and placeholders agree."""
    pot = tmp_path / "messages.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F", str(KIOSK_DIR / "babel.cfg"),
                    "-k", "N_", "--no-location", "--omit-header", "-o", str(pot), str(KIOSK_DIR)],
                   capture_output=True, check=True)
    with pot.open("rb") as fh:
        wanted = {m.id for m in read_po(fh) if m.id}
    assert len(wanted) > 100
    with (LOCALE_DIR / "nl" / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        catalog = {m.id: m.string for m in read_po(fh, locale="nl") if m.id}
    missing = sorted(w for w in wanted if not catalog.get(w))
    assert not missing, f"untranslated in nl (run kiosk/locale/update.py and translate): {missing}"
    for msgid in wanted:
        assert sorted(re.findall(r"%\((\w+)\)s", msgid)) == sorted(re.findall(r"%\((\w+)\)s", catalog[msgid])), msgid
    nl = translations("nl")
    assert nl.gettext("Check in") == "Aanmelden"
    assert translations("en").gettext("Check in") == "Check in"


def test_totp_codes_are_refused_when_replayed(tmp_path):
    """Checked fact: pyotp's verify() accepts the same code twice; StaffAuth must not."""
    import pyotp

    from edge.config import Settings
    from kiosk.auth import StaffAuth
    from kiosk.service import OfflineStorage

    secret = pyotp.random_base32()
    totp = pyotp.TOTP(secret)
    code = totp.now()
    assert totp.verify(code) and totp.verify(code)  # the library alone takes a replay
    settings = Settings(site={"id": "t"}, data_dir=tmp_path)
    storage = OfflineStorage(settings)
    auth = StaffAuth(storage, FieldCipher(Keyring.generate()), 8)
    secret = auth.add_user("anna", "reception", "correct horse battery")
    assert auth.check_password("anna", "wrong password!!") is None
    assert auth.check_password("nobody", "correct horse battery") is None
    first = auth.check_password("anna", "correct horse battery")
    assert first is not None and auth.session(first).stage == "password"
    code = pyotp.TOTP(secret).now()
    assert auth.check_totp(first, code)
    assert auth.session(first).stage == "full"
    second = auth.check_password("anna", "correct horse battery")
    assert not auth.check_totp(second, code), "a replayed TOTP code was accepted"
    assert auth.session(second).stage == "password"


def test_console_lists_follow_changes_from_this_and_other_connections(tmp_path):
    """The desk keeps its console lists between reloads; a write here or by another process must show."""
    from datetime import timedelta

    from edge.config import Settings
    from edge.events import utcnow
    from kiosk.desk import Desk
    from kiosk.forms import VisitorDetails
    from kiosk.service import OfflineStorage

    settings = Settings(site={"id": "t"}, data_dir=tmp_path,
                        kiosk={"hosts": {"anna": {"name": "Anna de Vries"}}})
    cipher = FieldCipher(Keyring.generate())
    console = Desk(settings, OfflineStorage(settings), cipher)
    admin = Desk(settings, OfflineStorage(settings), cipher)  # another connection, as an admin command has
    now = utcnow()

    def visitor(name: str) -> VisitorDetails:
        return VisitorDetails(name, "Acme", "anna", "meeting", None, None)

    assert console.expected_today() == []
    ours = console.pre_register(visitor("Bea Ours"), now, now + timedelta(hours=1), "test")
    assert [v.name for v in console.expected_today()] == ["Bea Ours"]
    theirs = admin.pre_register(visitor("Cas Theirs"), now + timedelta(minutes=1), now + timedelta(hours=1), "test")
    assert [v.name for v in console.expected_today()] == ["Bea Ours", "Cas Theirs"]
    admin.cancel(ours.id, "test")
    assert [v.id for v in console.expected_today()] == [theirs.id]
    console.cancel(theirs.id, "test")
    assert console.expected_today() == [] and admin.expected_today() == []
