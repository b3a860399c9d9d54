"""The UI's API client against the real app (FastAPI TestClient is an httpx.Client)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from serving.api.app import create_app
from serving.api.settings import ApiSettings
from serving.api.testing import CatalogResponder
from serving.ui.client import Answer, ApiClient, ApiError

PRODUCTS = [("B0001", "Girls Ballet Tutu Neon Pink", "A three layer tutu, 12 inches long.")]


@pytest.fixture
def http() -> TestClient:
    return TestClient(create_app(CatalogResponder(PRODUCTS), settings=ApiSettings(key=SecretStr("k"))))


def test_models_ask_and_stream(http: TestClient) -> None:
    api = ApiClient("http://testserver", "k", http=http)
    assert api.models() == ["prodtune-router", "prodtune-describer", "prodtune-qa"]
    answer = api.ask("What length is the ballet tutu?", "prodtune-router", 10)
    assert "12 inches" in answer.text and answer.route == "answer"
    assert answer.sources[0]["uid"] == "B0001" and answer.threshold == 10

    streamed = Answer()
    pieces = list(api.ask_stream("What length is the ballet tutu?", "prodtune-router", 10, streamed))
    assert len(pieces) > 1 and "".join(pieces).strip() == answer.text
    assert streamed.text.strip() == answer.text and streamed.sources == answer.sources


def test_errors_carry_the_api_message(http: TestClient) -> None:
    with pytest.raises(ApiError, match="HTTP 401: missing or invalid API key"):
        ApiClient("http://testserver", "wrong", http=http).models()
    with pytest.raises(ApiError, match="HTTP 404: model 'nope'"):
        list(ApiClient("http://testserver", "k", http=http).ask_stream("x?", "nope", 50, Answer()))


def test_url_and_key_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRODTUNE_API_URL", "http://api.example:9000/")
    monkeypatch.setenv("PRODTUNE_API_KEY", "sekret")
    api = ApiClient()
    assert api.base_url == "http://api.example:9000"
    assert api.headers == {"Authorization": "Bearer sekret"}
