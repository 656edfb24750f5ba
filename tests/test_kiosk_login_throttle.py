"""Staff sign-in throttling through the real app: guessing is slowed and audited, staff are never locked out.

Each address is its own TestClient on the one app (Starlette's `client=` sets the peer address the app sees).
The throttle's clock is held still (a settable value) so a backoff cannot run out while a slow machine works.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pyotp
import pytest
from conftest import KioskSite, kiosk_config, query, wait_until, write_config
from fastapi.testclient import TestClient

PASSWORD = "correct horse battery"
RECEPTION_PC = "10.0.0.10"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def site(kiosk_site: KioskSite) -> Iterator[KioskSite]:
    kiosk_site.clock = Clock()
    kiosk_site.service.app.state.login_throttle.clock = kiosk_site.clock
    kiosk_site.secret = kiosk_site.auth.add_user("rita", "reception", PASSWORD)
    yield kiosk_site


def browser(site: KioskSite, address: str) -> TestClient:
    return TestClient(site.service.app, base_url="https://testserver", client=(address, 50000))


def csrf(client: TestClient) -> str:
    import re

    return re.search(r'name="csrf" value="([^"]+)"', client.get("/staff/login").text).group(1)


def try_password(client: TestClient, username: str, password: str) -> int:
    r = client.post("/staff/login", data={"csrf": csrf(client), "username": username, "password": password},
                    follow_redirects=False)
    return r.status_code


def sign_in(site: KioskSite, client: TestClient, step: int = 0) -> int:
    """Password and code; the status of the last answer (303 to /staff when signed in)."""
    status = try_password(client, "rita", PASSWORD)
    if status != 303:
        return status
    totp = pyotp.TOTP(site.secret)
    code = totp.generate_otp(totp.timecode(datetime.now()) + step)
    r = client.post("/staff/totp", data={"csrf": client.cookies.get("sw_csrf"), "code": code},
                    follow_redirects=False)
    return r.status_code if r.status_code != 303 or r.headers["location"] == "/staff" else 500


def audit_actions(site: KioskSite) -> list[str]:
    return [a for (a,) in query(site.db_path, "SELECT action FROM audit WHERE actor = 'system' ORDER BY id")]


def test_wrong_passwords_from_one_address_do_not_lock_the_user_out_at_another(site):
    attacker, reception = browser(site, "10.0.0.66"), browser(site, RECEPTION_PC)
    assert [try_password(attacker, "rita", "wrong") for _ in range(5)] == [401] * 5
    assert try_password(attacker, "rita", PASSWORD) == 429, "the guessing address was not stopped"
    assert sign_in(site, reception) == 303, "the real user was locked out by someone else's wrong passwords"
    assert "login_lock_account_address" in audit_actions(site)


def test_one_address_trying_many_accounts_is_stopped_across_accounts(site):
    attacker = browser(site, "10.0.0.66")
    statuses = [try_password(attacker, f"user{i}", "wrong") for i in range(20)]
    assert statuses == [401] * 20
    assert try_password(attacker, "rita", PASSWORD) == 429, "an address guessing many accounts went on"
    assert "login_lock_address" in audit_actions(site)
    assert sign_in(site, browser(site, RECEPTION_PC)) == 303


def test_guessing_from_many_addresses_slows_the_account_but_its_reception_pc_still_gets_in(site):
    reception = browser(site, RECEPTION_PC)
    assert sign_in(site, reception) == 303  # the reception PC is a known address of rita from now on
    reception.cookies.clear()
    for i in range(10):  # a botnet: two wrong passwords from each of ten addresses
        bot = browser(site, f"192.0.2.{i}")
        assert [try_password(bot, "rita", "wrong") for _ in range(2)][0] in (401, 429)
    assert "login_lock_account_backoff" in audit_actions(site)
    newcomer = browser(site, "192.0.2.200")
    assert try_password(newcomer, "rita", PASSWORD) == 429, "the account was not slowed for new addresses"
    assert sign_in(site, reception, step=1) == 303, "the account's own reception PC was locked out"
    site.clock.now += 3600  # the window has passed: the newcomer may try again
    assert try_password(newcomer, "rita", PASSWORD) == 303


def test_parallel_wrong_passwords_get_no_more_tries_than_the_limit(site):
    """Forty guesses sent at once: each try is counted when it is let through, not only once its slow password
    hash has come back, so no more than `login_attempts` of them get to the password check."""
    import asyncio
    import re

    import httpx

    async def guess_in_parallel() -> list[int]:
        transport = httpx.ASGITransport(app=site.service.app, client=("10.0.0.77", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            page = await client.get("/staff/login")
            token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
            answers = await asyncio.gather(*(
                client.post("/staff/login", data={"csrf": token, "username": "rita", "password": f"wrong {i}"})
                for i in range(40)))
            return [r.status_code for r in answers]

    statuses = asyncio.run(guess_in_parallel())
    attempts = site.settings.kiosk.login_attempts
    assert statuses.count(401) <= attempts, f"{statuses.count(401)} parallel guesses reached the password check"
    assert sorted(set(statuses)) == [401, 429], statuses
    assert try_password(browser(site, "10.0.0.77"), "rita", PASSWORD) == 429
    assert sign_in(site, browser(site, RECEPTION_PC)) == 303, "tries in flight were never settled"


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted-proxy", "no-trusted-proxy"])
def test_forwarded_for_decides_the_throttled_address_only_from_a_trusted_proxy(
        tmp_path, mqtt_broker, service_factory, trusted):
    """Behind a TLS proxy on the box every browser arrives from 127.0.0.1: with the proxy trusted
    (`kiosk.trusted_proxies`) each browser's X-Forwarded-For is its own throttled address; without it the header
    is ignored, or anyone could pick a fresh address for every guess. The real service (uvicorn) is run: it is
    uvicorn that reads the headers. Plain HTTP to loopback, so cookies are not Secure here."""
    import re

    import httpx

    from edge.config import load_settings

    proxies = ["127.0.0.1"] if trusted else []
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", mqtt_broker.port, None,
                          kiosk=kiosk_config(tmp_path, secure_cookies=False, trusted_proxies=proxies))
    url = f"http://127.0.0.1:{load_settings(config).kiosk.port}"
    service_factory(config, "kiosk")

    def answers() -> bool:
        try:
            return httpx.get(url + "/", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(answers, 20, "the kiosk to answer HTTP")
    with httpx.Client(base_url=url, timeout=30) as client:
        def guess(browser_address: str) -> int:
            token = re.search(r'name="csrf" value="([^"]+)"', client.get("/staff/login").text).group(1)
            r = client.post("/staff/login", data={"csrf": token, "username": "rita", "password": "wrong"},
                            headers={"X-Forwarded-For": browser_address})
            return r.status_code

        assert [guess("203.0.113.5") for _ in range(5)] == [401] * 5
        assert guess("203.0.113.5") == 429
        if trusted:
            assert guess("203.0.113.6") == 401, "another browser behind the proxy was locked out with the guesser"
        else:
            assert guess("203.0.113.6") == 429, "X-Forwarded-For from an untrusted peer picked the address"
    locks = query(tmp_path / "data" / "kiosk.db", "SELECT detail FROM audit WHERE action = ?",
                  ("login_lock_account_address",))
    assert locks == [(f"'rita' from {'203.0.113.5' if trusted else '127.0.0.1'} (wrong passwords)",)]


def test_a_trusted_proxy_that_is_not_an_address_is_refused_at_start_naming_the_key(tmp_path, mqtt_broker):
    """uvicorn would take a mistyped entry as a literal that never matches, and the headers would be silently
    ignored; the config check refuses it instead."""
    from edge.config import ConfigError, load_settings

    config = write_config(tmp_path / "config.yaml", tmp_path / "data", mqtt_broker.port, None,
                          kiosk=kiosk_config(tmp_path, trusted_proxies=["127.0.0.1", "proxy.local"]))
    with pytest.raises(ConfigError, match=r"trusted_proxies[\s\S]*'proxy.local' is not an IP address"):
        load_settings(config)
