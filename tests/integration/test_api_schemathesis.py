"""Property-based API testing: schemathesis drives the served OpenAPI spec against a live server
(with a valid key): no 5xx for any input, and every response matches the documented schema.

Runs on PostgreSQL with the embedded runtime executing every accepted submission."""

from __future__ import annotations

import uuid

import hypothesis
import pytest
import schemathesis

from swarm.api.testing import live_api
from swarm.sim import SimConfig, SimParams, SimServer
from tests.conftest import PG_ADMIN_URL, _admin_exec, _pg_base, make_settings


@pytest.fixture(scope="module")
def served(tmp_path_factory, pg_template):
    # PostgreSQL, the strict one: it rejects NUL bytes and over-long strings that SQLite stores.
    name = f"swarm_fuzz_{uuid.uuid4().hex[:12]}"
    _admin_exec(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    url = f"{_pg_base(PG_ADMIN_URL)}/{name}"
    # Generated tasks carry no #sim directive: keep the default swarm tiny and subprocess-free.
    try:
        with (
            SimServer(SimConfig(port=0, params=SimParams(agents=1, tools=1, tool="echo"))) as sim,
            live_api(make_settings(tmp_path_factory.mktemp("fuzz"), url, sim.url)) as api,
        ):
            key = api.key("fuzz")
            with api.client(key) as c:  # one real run, so some generated ids and filters hit something
                c.post("/v1/runs", json={"task": "seed"})
            yield api, key
    finally:
        _admin_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def api_schema(served):
    api, key = served
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    schema.config.headers = {"Authorization": f"Bearer {key}"}
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@hypothesis.settings(
    max_examples=10, deadline=None, suppress_health_check=list(hypothesis.HealthCheck), derandomize=True
)
def test_api_conforms_to_its_schema(case, served):
    api, key = served
    # follow=false: an event stream of a live run would otherwise stay open until the run ends.
    if case.path.endswith("/events") and isinstance(case.query, dict):
        case.query["follow"] = "false"
    case.call_and_validate(headers={"Authorization": f"Bearer {key}"}, timeout=30)
