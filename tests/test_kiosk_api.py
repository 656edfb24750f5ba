"""The pre-registration JSON API: bearer tokens, and schemathesis generating requests from its OpenAPI document."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from conftest import KioskSite
from hypothesis import HealthCheck, settings

from edge.events import utcnow


@pytest.fixture
def api_site(tmp_path, mqtt_broker) -> Iterator[KioskSite]:
    site = KioskSite(tmp_path, mqtt_broker.port)
    site.token = site.auth.create_api_token("hr-system")
    yield site
    site.close()


def _module_site() -> KioskSite:
    """Built at import: schemathesis reads the OpenAPI document while pytest collects (its `from_fixture`
    does not work with this pytest). The API needs no broker: pre-registration publishes no facts."""
    import tempfile
    from pathlib import Path

    from edge.brokers import free_port

    site = KioskSite(Path(tempfile.mkdtemp(prefix="kiosk-api-")), free_port(), start_producer=False)
    site.token = site.auth.create_api_token("schemathesis")
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
