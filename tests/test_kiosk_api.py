"""The pre-registration JSON API: scoped bearer tokens that reach only their own visits, and schemathesis
generating requests from its OpenAPI document."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import schemathesis
from conftest import KioskSite
from hypothesis import HealthCheck, settings

from edge.events import utcnow
from kiosk.forms import VisitorDetails

ALL_SCOPES = frozenset({"preregister", "read-own", "cancel-own"})


@pytest.fixture
def api_site(tmp_path, mqtt_broker) -> Iterator[KioskSite]:
    site = KioskSite(tmp_path, mqtt_broker.port)
    site.token = site.auth.create_api_token("hr-system", ALL_SCOPES)
    yield site
    site.close()


def _module_site() -> KioskSite:
    """Built at import: schemathesis reads the OpenAPI document while pytest collects (its `from_fixture`
    does not work with this pytest). The API needs no broker: pre-registration publishes no facts."""
    import tempfile
    from pathlib import Path

    from edge.brokers import free_port

    site = KioskSite(Path(tempfile.mkdtemp(prefix="kiosk-api-")), free_port(), start_producer=False)
    site.token = site.auth.create_api_token("schemathesis", ALL_SCOPES)
    return site


SITE_FOR_SCHEMA = _module_site()
schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", SITE_FOR_SCHEMA.service.app)


@pytest.fixture(scope="module", autouse=True)
def _close_schema_site() -> Iterator[None]:
    yield
    SITE_FOR_SCHEMA.client.close()
    SITE_FOR_SCHEMA.service.producer.db.conn.close()
    import shutil

    shutil.rmtree(SITE_FOR_SCHEMA.data_dir.parent, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_to_its_openapi_document(case):
    """Generated requests (valid and invalid): never a 5xx, every answer as documented."""
    case.call_and_validate(headers={"Authorization": f"Bearer {SITE_FOR_SCHEMA.token}"})


def test_api_creates_lists_and_cancels_expected_visits(api_site):
    client = api_site.client
    auth = {"Authorization": f"Bearer {api_site.token}"}
    assert client.get("/api/v1/expected-visits").status_code == 401
    assert client.get("/api/v1/expected-visits", headers={"Authorization": "Bearer nope"}).status_code == 401
    body = {"name": "Hanna HR", "company": "Acme", "host_id": "ravi",
            "expected_start": utcnow().isoformat(), "email": "hanna@example.invalid"}
    r = client.post("/api/v1/visits", json=body, headers=auth)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["state"] == "expected" and created["invite_path"] == f"/invite/{created['invite_code']}"
    assert [v["id"] for v in client.get("/api/v1/expected-visits", headers=auth).json()] == [created["id"]]
    r = client.post("/api/v1/visits", json={**body, "host_id": "nobody"}, headers=auth)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "host_id"]
    r = client.post("/api/v1/visits", json={**body, "name": " \t "}, headers=auth)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "name"]
    r = client.post("/api/v1/visits", json={**body, "duration_minutes": 0}, headers=auth)
    assert r.status_code == 422
    r = client.post("/api/v1/visits", json={**body, "admin": True}, headers=auth)
    assert r.status_code == 422, "an unknown field was accepted"
    r = client.post("/api/v1/visits", json={**body, "expected_start": "2026-11-21T10:00:00"}, headers=auth)
    assert r.status_code == 422, "a time without a UTC offset was accepted"
    assert client.delete(f"/api/v1/visits/{created['id']}", headers=auth).status_code == 204
    assert client.delete(f"/api/v1/visits/{created['id']}", headers=auth).status_code == 404
    assert client.get("/api/v1/expected-visits", headers=auth).json() == []
    actors = {a for (a,) in api_site.service.producer.db.execute("SELECT actor FROM audit").fetchall()}
    assert "api:hr-system" in actors


def details(name: str, host: str = "anna") -> VisitorDetails:
    return VisitorDetails(name=name, company="", host_id=host, purpose="", email=None, phone=None)


def test_token_reaches_only_the_visits_it_pre_registered(api_site):
    """Walk-ins, staff-made visits and another client's visits: not listed, not readable, not cancellable."""
    client, desk = api_site.client, api_site.desk
    auth = {"Authorization": f"Bearer {api_site.token}"}
    now = utcnow()
    staff_made = desk.pre_register(details("Stan Staffmade"), now, now + timedelta(hours=1), "anna")
    walk_in = desk.start_walk_in(details("Wally Walkin"), "en")
    other = api_site.auth.create_api_token("calendar", ALL_SCOPES)
    r = client.post("/api/v1/visits", json={"name": "Otto Other", "host_id": "anna", "expected_start": now.isoformat()},
                    headers={"Authorization": f"Bearer {other}"})
    assert r.status_code == 201
    others = r.json()["id"]
    r = client.post("/api/v1/visits", json={"name": "Mia Mine", "host_id": "anna", "expected_start": now.isoformat()},
                    headers=auth)
    mine = r.json()["id"]

    listed = client.get("/api/v1/expected-visits", headers=auth)
    assert [v["id"] for v in listed.json()] == [mine]
    for vid in (staff_made.id, walk_in.visit_id, others):
        assert client.get(f"/api/v1/visits/{vid}", headers=auth).status_code == 404
        assert client.delete(f"/api/v1/visits/{vid}", headers=auth).status_code == 404
    assert desk.get(staff_made.id).state == "expected" and desk.get(others).state == "expected"
    assert client.get(f"/api/v1/visits/{mine}", headers=auth).json()["name"] == "Mia Mine"
    assert client.delete(f"/api/v1/visits/{mine}", headers=auth).status_code == 204
    seen = listed.text + "".join(client.get(f"/api/v1/visits/{v}", headers=auth).text
                                 for v in (staff_made.id, walk_in.visit_id, others))
    assert not any(n in seen for n in ("Stan", "Wally", "Otto")), "a token saw someone else's visitor's name"


def test_token_needs_the_scope_of_each_route(api_site):
    client = api_site.client
    token = api_site.auth.create_api_token("door-system")  # preregister only, the default
    auth = {"Authorization": f"Bearer {token}"}
    r = client.post("/api/v1/visits", json={"name": "Sam Scope", "host_id": "anna",
                                             "expected_start": utcnow().isoformat()}, headers=auth)
    assert r.status_code == 201
    assert client.get("/api/v1/hosts", headers=auth).status_code == 200
    assert client.get("/api/v1/expected-visits", headers=auth).status_code == 403
    assert client.get(f"/api/v1/visits/{r.json()['id']}", headers=auth).status_code == 403
    assert client.delete(f"/api/v1/visits/{r.json()['id']}", headers=auth).status_code == 403
    assert api_site.desk.get(r.json()["id"]).state == "expected"
    db = api_site.service.producer.db
    audited = [d for (d,) in db.execute("SELECT detail FROM audit WHERE action = 'api_token'")]
    assert "created door-system (preregister)" in audited
    document = client.get("/api/v1/openapi.json").json()
    assert "403" in document["paths"]["/api/v1/expected-visits"]["get"]["responses"]


def test_tokens_made_before_scopes_keep_only_preregister(tmp_path):
    """The kiosk_v2 migration: an old token may still create visits and nothing more."""
    from edge.publisher import MIGRATIONS as PUBLISH_MIGRATIONS
    from edge.store import open_database, transaction
    from kiosk.store import MIGRATIONS, token_hash

    path = tmp_path / "kiosk.db"
    old = open_database(path, (*PUBLISH_MIGRATIONS, MIGRATIONS[0]))
    with transaction(old):
        old.execute("INSERT INTO api_tokens (token_hash, name, created_at) VALUES (?, 'legacy', '2026-01-01')",
                    [token_hash("swk_legacy")])
    old.conn.close()
    db = open_database(path, (*PUBLISH_MIGRATIONS, *MIGRATIONS))
    assert db.execute("SELECT name, scopes FROM api_tokens").fetchall() == [("legacy", "preregister")]


def test_api_token_commands_take_scopes_and_refuse_unknown_ones(api_site):
    from click.testing import CliRunner

    from edge.cli import cli

    runner = CliRunner()
    base = ["--config", str(api_site.config), "kiosk", "api-token"]
    bad = runner.invoke(cli, [*base, "create", "x", "--scope", "preregister,everything"], obj={})
    assert bad.exit_code == 2 and "unknown scope everything" in bad.output and "Traceback" not in bad.output
    made = runner.invoke(cli, [*base, "create", "hr2", "--scope", "preregister,read-own"], obj={})
    assert made.exit_code == 0 and made.output.startswith("swk_"), made.output
    assert runner.invoke(cli, [*base, "scope", "hr2", "--scope", "cancel-own,preregister"], obj={}).exit_code == 0
    listed = runner.invoke(cli, [*base, "list"], obj={}).output
    assert "hr2\tcancel-own,preregister" in listed and "swk_" not in listed
