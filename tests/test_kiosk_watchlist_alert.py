"""Reception's decision on a watchlist hold ends the edge's watchlist_hit alert, naming who decided.

The real kiosk app (TestClient over the service's app, with its fact producer on a real mosquitto) and a real
edge process running the real WatchlistRule.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import SITE, query, wait_until
from test_kiosk_web import staff_csrf, staff_login

from edge import topics


def hold(site, name: str) -> str:
    """A walk-in whose name is on the watchlist: held; returns the new visit's id."""
    def held() -> set[str]:
        return {row[0] for row in query(site.db_path, "SELECT id FROM visits WHERE state = 'held'")}

    before = held()
    r = site.client.post("/checkin", data={"csrf": site.csrf(), "name": name, "host_id": "ravi"},
                         follow_redirects=True)
    assert r.status_code == 200 and "Reception will help you in a moment." in r.text
    (vid,) = held() - before
    return vid


def alerts(site) -> dict[str, dict]:
    """The edge's watchlist alerts by visit id (from the dedupe key), read from its database."""
    rows = query(site.data_dir / "edge.db", "SELECT dedupe_key, payload FROM alerts WHERE kind = 'watchlist_hit'")
    return {key.removeprefix("watchlist:"): json.loads(payload) for key, payload in rows}


def test_reception_decision_on_a_watchlist_hold_resolves_the_alert_with_who_decided(
        kiosk_site, service_factory, client_factory, mqtt_broker):
    service_factory(kiosk_site.config, "edge")
    watcher = client_factory(mqtt_broker.port)
    watcher.subscribe(topics.alerts_filter(SITE))
    watcher.subscribe(f"sitewarden/{SITE}/kiosk/#")
    refused, admitted = hold(kiosk_site, "Mallory Example"), hold(kiosk_site, "MALLORY  example")
    wait_until(lambda: len(alerts(kiosk_site)) == 2, 15, "two watchlist_hit alerts on the edge")
    assert {a["state"] for a in alerts(kiosk_site).values()} == {"new"}

    staff_login(kiosk_site, "rita")
    r = kiosk_site.client.post(f"/staff/visits/{refused}/refuse", data={"csrf": staff_csrf(kiosk_site)},
                               follow_redirects=False)
    assert r.status_code == 303
    r = kiosk_site.client.post(f"/staff/visits/{admitted}/release", data={"csrf": staff_csrf(kiosk_site)},
                               follow_redirects=False)
    assert r.status_code == 303 and kiosk_site.desk.get(admitted).state == "on_site"

    done = wait_until(lambda: (a := alerts(kiosk_site)) and all(x["state"] == "resolved" for x in a.values()) and a,
                      15, "both watchlist alerts resolved")
    assert done[refused]["resolved_by"] == "kiosk:rita" and "refused" in done[refused]["note"]
    assert done[admitted]["resolved_by"] == "kiosk:rita" and "admitted" in done[admitted]["note"]

    decided = watcher.payloads(f"sitewarden/{SITE}/kiosk/reception/watchlist_hold_decided")
    assert sorted((d["visit_id"], d["decision"], d["decided_by"]) for d in decided) == sorted(
        [(refused, "refused", "rita"), (admitted, "admitted", "rita")])
    ends = [m for m in watcher.payloads(f"sitewarden/{SITE}/alert/") if m.get("type") == "end"]
    assert len(ends) == 2
    assert "mallory" not in json.dumps(decided + ends).lower(), "a visitor's name went over MQTT"


def test_check_in_in_mathematical_or_cherokee_letters_is_held_and_raises_the_alert(
        kiosk_site, service_factory, mqtt_broker):
    """The reviewer's bypass, through the real check-in form: each of these passed as an ordinary visitor."""
    listed = Path(kiosk_site.settings.kiosk.watchlist_file)
    listed.write_text(listed.read_text(encoding="utf-8") + "Ivan Petrov\n", encoding="utf-8")
    service_factory(kiosk_site.config, "edge")
    typed = ["\U0001d408van Petrov",              # mathematical bold 𝐈
             "\u13a5van Petrov",                  # Cherokee Ꭵ
             "\U0001d540v\u0430n P\u0435trov",     # double-struck 𝕀, Cyrillic а and е
             "\U0001d40c\U0001d41a\U0001d425\U0001d425\U0001d428\U0001d42b\U0001d432 Example"]  # bold 𝐌𝐚𝐥𝐥𝐨𝐫𝐲
    visits = [hold(kiosk_site, name) for name in typed]
    wait_until(lambda: set(alerts(kiosk_site)) >= set(visits), 15, "a watchlist_hit alert for each held check-in")
