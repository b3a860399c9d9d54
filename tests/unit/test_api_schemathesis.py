"""Property-based requests from the API's own OpenAPI schema (schemathesis): whatever the body, path or
method, the API never answers 5xx. The responder is the deterministic CatalogResponder, so a 5xx here
is the API's own fault; errors keep OpenAI's shape."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from pydantic import SecretStr

from serving.api.app import create_app
from serving.api.settings import ApiSettings
from serving.api.testing import CatalogResponder

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402

KEY = "schema-key"
PRODUCTS = [("B000111", "Girls Ballet Tutu Neon Pink", "A three layer ballet tutu, 12 inches long.")]
APP = create_app(
    CatalogResponder(PRODUCTS),
    settings=ApiSettings(key=SecretStr(KEY), rate_burst=100_000, rate_per_minute=1e6, max_body_bytes=4096),
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_request_makes_the_api_fail(case) -> None:  # type: ignore[no-untyped-def]
    response = case.call_and_validate(headers={"Authorization": f"Bearer {KEY}"}, checks=[not_a_server_error])
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
