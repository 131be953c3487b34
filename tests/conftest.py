"""Shared fixtures: an application per test on a fresh database (SQLite, and PostgreSQL when configured)."""
from __future__ import annotations

import os

import pytest

from app import create_app

PG_URL = os.environ.get("LBP_TEST_PG_URL")
FHIR = "application/fhir+json"


def _reset_postgres(url: str) -> None:
    from sqlalchemy import create_engine

    from app.store.schema import metadata

    engine = create_engine(url)
    metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    """Every test that uses this runs on SQLite and, where LBP_TEST_PG_URL is set, on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    if not PG_URL:
        pytest.skip("LBP_TEST_PG_URL is not set (.ci/run starts PostgreSQL and sets it)")
    _reset_postgres(PG_URL)
    return PG_URL


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'test.db'}"


ADMIN = "test-admin"


@pytest.fixture
def app(db_url, tmp_path):
    from app.auth.local import register_client

    clients = tmp_path / "clients.json"
    register_client(clients, ADMIN, "system/*.cruds", tmp_path / "keys")
    application = create_app({"DATABASE_URL": db_url, "LOAD_ARTIFACTS": False, "TESTING": True,
                              "CLIENTS_FILE": str(clients)})
    application.config["TEST_KEY_DIR"] = str(tmp_path / "keys")
    yield application
    application.extensions["lbp"].store.dispose()


def get_token(app, client_id: str = ADMIN, scope: str = "system/*.cruds") -> str:
    """A real access token through the token endpoint (SMART Backend Services)."""
    from pathlib import Path

    from app.auth.local import token_request

    pem = Path(app.config["TEST_KEY_DIR"]) / f"{client_id}.pem"
    r = app.test_client().post("/auth/token", data=token_request(client_id, pem, "http://localhost/auth/token",
                                                                  scope))
    assert r.status_code == 200, r.get_json()
    return r.get_json()["access_token"]


@pytest.fixture
def client(app):
    """A test client whose requests carry an admin access token (system/*.cruds)."""
    c = app.test_client()
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {get_token(app)}"
    return c


@pytest.fixture
def anonymous(app):
    return app.test_client()


class FhirClient:
    """Small helper over Flask's test client that speaks application/fhir+json."""

    def __init__(self, client):
        self.c = client

    def post(self, path, body, headers=None):
        return self.c.post(f"/fhir/{path}".rstrip("/"), json=body, content_type=FHIR, headers=headers or {})

    def put(self, path, body, headers=None):
        return self.c.put(f"/fhir/{path}", json=body, content_type=FHIR, headers=headers or {})

    def get(self, path, headers=None):
        return self.c.get(f"/fhir/{path}", headers=headers or {})

    def delete(self, path, headers=None):
        return self.c.delete(f"/fhir/{path}", headers=headers or {})

    def create(self, resource):
        r = self.post(resource["resourceType"], resource)
        assert r.status_code == 201, r.get_json()
        return r.get_json()

    def search(self, query):
        r = self.get(query)
        assert r.status_code == 200, r.get_json()
        return r.get_json()


@pytest.fixture
def fhir(client):
    return FhirClient(client)


def pytest_terminal_summary(terminalreporter):
    """The generated-input test's figures (requests per interaction, answers >= 500) in every run's summary."""
    import sys

    module = next((m for name, m in list(sys.modules.items()) if name.endswith("test_generated_input")), None)
    counts = getattr(module, "COUNTS", None)
    if counts:
        errors = sum(getattr(module, "SERVER_ERRORS", {}).values())
        terminalreporter.write_line(f"generated bad input: {sum(counts.values())} requests, {errors} answers >= 500 "
                                    f"({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})")
