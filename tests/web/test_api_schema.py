"""Schemathesis against the live OpenAPI document: generated requests to every operation, with a
valid tenant token, answered without a server error and exactly as the document describes."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from controlplane.services import tenants, tokens
from controlplane.services.scope import OPERATOR

# What the document promises. Left out: positive_data_acceptance and negative_data_rejection,
# which guess at rules a schema cannot state (a domain name's syntax, ignored unknown query
# parameters), and allow_header_conformance, since ".../mailboxes/bulk" is also the path of a
# mailbox named "bulk", whose GET, PATCH and DELETE its Allow header rightly lists.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.unsupported_method,
    checks.ignored_auth,
]


# Generated names rarely exist, so each request is sent again to objects that do; but for a
# DELETE, which would leave the operations after it nothing to reach.
EXISTING = {"name": "a.test", "local_part": "ann"}


@pytest.fixture
def api_schema(app, world):
    world.settings.mail_root.mkdir()  # a prepared installation: filters are written next to the mail
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


@pytest.fixture
def tenant_token(world) -> str:
    with world.transaction() as session:
        one = tenants.get_tenant(session, OPERATOR, "One")
        return tokens.create_token(session, OPERATOR, tenant=one, kind="tenant", name="schemathesis")[1]


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=10, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
def test_every_operation_answers_as_documented(case, tenant_token) -> None:
    headers = {"Authorization": f"Bearer {tenant_token}"}
    case.call_and_validate(headers=headers, checks=CHECKS)
    if case.path_parameters and case.method != "DELETE":
        case.path_parameters = {key: EXISTING.get(key, value) for key, value in case.path_parameters.items()}
        case.call_and_validate(headers=headers, checks=CHECKS)
