"""The kiosk's transport: HTTPS with HSTS, no plain HTTP to other machines, and a clear word when the cookie
does not come back (what a browser does with Secure cookies over plain HTTP)."""

from __future__ import annotations

import ssl
import subprocess
import sys

import httpx
from conftest import KioskSite, kiosk_config, wait_until, write_config
from test_tls import _pki


def test_kiosk_over_tls_sends_hsts(tmp_path, mqtt_broker, service_factory):
    """A real `sitewarden run kiosk` with a certificate, fetched over HTTPS that checks the site CA."""
    pki = _pki(tmp_path)
    kiosk = kiosk_config(tmp_path, tls_cert_file=str(pki["cert"]), tls_key_file=str(pki["key"]))
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", mqtt_broker.port, None, kiosk=kiosk)
    service_factory(config, "kiosk")
    url = f"https://127.0.0.1:{kiosk['port']}/checkin"

    def fetch() -> httpx.Response | None:
        try:
            return httpx.get(url, verify=ssl.create_default_context(cafile=str(pki["ca"])), timeout=5)
        except httpx.TransportError:
            return None

    page = wait_until(fetch, 20, "the kiosk to answer over HTTPS")
    assert page.status_code == 200
    assert page.headers["strict-transport-security"] == "max-age=31536000"


def test_plain_http_kiosk_on_loopback_sends_no_hsts(kiosk_site):
    assert "strict-transport-security" not in kiosk_site.client.get("/checkin").headers


def test_kiosk_refuses_plain_http_on_a_network_address_with_one_clear_line(tmp_path, mqtt_broker):
    kiosk = kiosk_config(tmp_path, listen_host="0.0.0.0")
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", mqtt_broker.port, None, kiosk=kiosk)
    try:
        done = subprocess.run([sys.executable, "-m", "edge.cli", "--config", str(config), "run", "kiosk"],
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired as err:
        raise AssertionError("the kiosk started serving plain HTTP on 0.0.0.0") from err
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    (line,) = [ln for ln in done.stderr.splitlines() if "kiosk.listen_host" in ln]
    assert "plain HTTP" in line and "kiosk.tls_cert_file" in line and "127.0.0.1" in line


def test_missing_cookie_is_told_apart_from_a_page_open_too_long(kiosk_site: KioskSite):
    csrf = kiosk_site.csrf()
    stale = kiosk_site.client.post("/checkin", data={"csrf": "stale-token", "name": "Ann Example", "host_id": "anna"})
    assert stale.status_code == 403 and "open too long" in stale.text
    kiosk_site.client.cookies.clear()  # what a browser does with Secure cookies on plain HTTP to another host
    dropped = kiosk_site.client.post("/checkin", data={"csrf": csrf, "name": "Ann Example", "host_id": "anna"})
    assert dropped.status_code == 403
    assert "open too long" not in dropped.text and "did not send this kiosk&#39;s cookie" in dropped.text
    assert "https://" in dropped.text
    assert kiosk_site.service.app.state.counters.refused.get("cookie_missing") == 1
