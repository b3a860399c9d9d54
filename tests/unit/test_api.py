"""The OpenAI-compatible API through FastAPI's TestClient, over the deterministic CatalogResponder."""

from __future__ import annotations

import json
import threading

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from components.common.errors import InputError
from components.common.ratelimit import KeyedBuckets
from serving.api.app import create_app
from serving.api.settings import ApiSettings
from serving.api.testing import CatalogResponder
from serving.llm.errors import BackendError

KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}
PRODUCTS = [
    ("B000111", "Girls Ballet Tutu Neon Pink", "A three layer ballet tutu, 12 inches long, elastic waist."),
    (
        "B000222",
        "Stainless Steel Water Bottle 750ml",
        "Double-walled bottle that keeps drinks cold for 24 hours.",
    ),
]


def settings(**kw: object) -> ApiSettings:
    return ApiSettings(key=SecretStr(KEY), **kw)


@pytest.fixture
def responder() -> CatalogResponder:
    return CatalogResponder(PRODUCTS)


@pytest.fixture
def client(responder: CatalogResponder) -> TestClient:
    return TestClient(create_app(responder, settings=settings()))


def ask(text: str, **extra: object) -> dict:
    return {"model": "prodtune-router", "messages": [{"role": "user", "content": text}], **extra}


def sse_events(lines: list[str]) -> list[str]:
    return [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]


def test_auth_refused_without_key_or_with_wrong_key(client: TestClient) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        r = client.post("/v1/chat/completions", json=ask("what is the tutu made of?"), headers=headers)
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "invalid_api_key"
        assert r.headers["www-authenticate"] == "Bearer"
    assert client.get("/v1/models").status_code == 401
    # bad JSON without a key is still an auth failure: auth is checked before the body is parsed
    assert client.post("/v1/chat/completions", content=b"{nope").status_code == 401


def test_health_needs_no_key_and_models_lists_three(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"] == {"catalog": True, "backend": True}
    ids = [m["id"] for m in client.get("/v1/models", headers=AUTH).json()["data"]]
    assert ids == ["prodtune-router", "prodtune-describer", "prodtune-qa"]
    assert client.get("/v1/models/prodtune-qa", headers=AUTH).json()["prodtune"]["route"] == "answer"
    assert client.get("/v1/models/gpt-4", headers=AUTH).status_code == 404


def test_readyz_is_503_until_the_loader_finishes(responder: CatalogResponder) -> None:
    release = threading.Event()

    def loader() -> CatalogResponder:
        release.wait(5)
        return responder

    with TestClient(create_app(loader=loader, settings=settings())) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 503
        r = c.post("/v1/chat/completions", json=ask("tutu?"), headers=AUTH)
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
        release.set()
        for _ in range(100):
            if c.get("/readyz").status_code == 200:
                break
            threading.Event().wait(0.05)
        assert c.get("/readyz").status_code == 200


def test_completion_returns_answer_route_and_sources(client: TestClient, responder: CatalogResponder) -> None:
    r = client.post(
        "/v1/chat/completions",
        json=ask("What length is the ballet tutu?", prodtune={"threshold": 10}),
        headers=AUTH,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "prodtune-router"
    assert "12 inches" in body["choices"][0]["message"]["content"]
    ext = body["prodtune"]
    assert ext["route"] == "answer" and ext["threshold"] == 10
    assert [s["uid"] for s in ext["sources"]] == ["B000111"]
    assert 0 < ext["sources"][0]["score"] <= 1
    assert responder.calls[-1] == ("What length is the ballet tutu?", 10, "prodtune-router")


def test_threshold_forms_and_default(client: TestClient, responder: CatalogResponder) -> None:
    client.post("/v1/chat/completions", json=ask("tutu?", similarity_threshold=35), headers=AUTH)
    assert responder.calls[-1][1] == 35
    r = client.post("/v1/chat/completions", json=ask("what is the tutu?"), headers=AUTH)
    assert responder.calls[-1][1] is None  # unset: the responder's (router's) own default applies
    assert r.json()["prodtune"]["threshold"] is None
    c = TestClient(create_app(responder, settings=settings(default_threshold=45)))
    c.post("/v1/chat/completions", json=ask("tutu?"), headers=AUTH)
    assert responder.calls[-1][1] == 45
    # a high threshold filters the weak match out
    r = client.post(
        "/v1/chat/completions", json=ask("what is the tutu?", similarity_threshold=99), headers=AUTH
    )
    assert r.json()["prodtune"]["sources"] == []


def test_last_user_message_is_the_input_and_model_forces_route(
    client: TestClient, responder: CatalogResponder
) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first question?"},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": [{"type": "text", "text": "Water Bottle"}]},
    ]
    r = client.post("/v1/chat/completions", json={"model": "prodtune-qa", "messages": messages}, headers=AUTH)
    assert r.status_code == 200
    assert responder.calls[-1][0] == "Water Bottle"
    assert r.json()["prodtune"]["route"] == "answer"  # forced, although it reads like a title
    r = client.post(
        "/v1/chat/completions", json={**ask("what is it?"), "model": "prodtune-describer"}, headers=AUTH
    )
    assert r.json()["prodtune"]["route"] == "describe"


def test_streaming_sends_sse_chunks_then_done(client: TestClient) -> None:
    payload = ask("What length is the ballet tutu?", stream=True, similarity_threshold=10)
    with client.stream("POST", "/v1/chat/completions", json=payload, headers=AUTH) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(list(r.iter_lines()))
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert len([c for c in chunks if c["choices"][0]["delta"].get("content")]) > 3  # really streamed
    full = client.post("/v1/chat/completions", json={**payload, "stream": False}, headers=AUTH).json()
    assert text.strip() == full["choices"][0]["message"]["content"]
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == "stop"
    assert last["prodtune"]["sources"][0]["uid"] == "B000111"


@pytest.mark.parametrize("body", [b"{not json", b'{"model": "prodtune-router",', b"\xff\xfe", b""])
def test_bad_json_is_400(client: TestClient, body: bytes) -> None:
    r = client.post(
        "/v1/chat/completions", content=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"model": "prodtune-router"}, "messages"),
        ({"model": "prodtune-router", "messages": []}, "messages"),
        ({"model": "prodtune-router", "messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
        ({**ask("x"), "temperature": 5}, "temperature"),
        ({**ask("x"), "max_tokens": 0}, "max_tokens"),
        ({**ask("x"), "prodtune": {"threshold": 150}}, "prodtune.threshold"),
        ({**ask("x"), "prodtune": {"treshold": 50}}, "prodtune.treshold"),
        ({"model": "prodtune-router", "messages": [{"role": "system", "content": "x"}]}, "messages"),
        ([1, 2, 3], "body"),
    ],
)
def test_schema_errors_are_422_naming_the_field(client: TestClient, payload: object, field: str) -> None:
    r = client.post("/v1/chat/completions", json=payload, headers=AUTH)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["param"] == field
    assert err["type"] == "invalid_request_error"


def test_unknown_model_is_404(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", json={**ask("x"), "model": "gpt-4o"}, headers=AUTH)
    assert r.status_code == 404 and r.json()["error"]["param"] == "model"


def test_oversized_body_is_413_before_parsing(responder: CatalogResponder) -> None:
    c = TestClient(create_app(responder, settings=settings(max_body_bytes=2048)))
    junk = b"{" + b"x" * 4096  # not even JSON: 413 wins because nothing is parsed
    r = c.post("/v1/chat/completions", content=junk, headers=AUTH)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    def chunked():  # no Content-Length: counted while reading
        for _ in range(8):
            yield b"x" * 512

    r = c.post("/v1/chat/completions", content=chunked(), headers=AUTH)
    assert r.status_code == 413
    assert c.post("/v1/chat/completions", json=ask("tutu?"), headers=AUTH).status_code == 200


def test_long_question_is_422(responder: CatalogResponder) -> None:
    c = TestClient(create_app(responder, settings=settings(max_input_chars=20)))
    r = c.post("/v1/chat/completions", json=ask("a" * 21), headers=AUTH)
    assert r.status_code == 422 and r.json()["error"]["param"] == "messages"


def test_rate_limit_is_429_with_retry_after(responder: CatalogResponder) -> None:
    c = TestClient(create_app(responder, settings=settings(rate_burst=2, rate_per_minute=6)))
    codes = [c.get("/v1/models", headers=AUTH).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    r = c.get("/v1/models", headers=AUTH)
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(r.headers["retry-after"]) <= 10


def test_token_bucket_refills_over_time() -> None:
    now = [0.0]
    bucket = KeyedBuckets(rate_per_min=60, capacity=2, clock=lambda: now[0])
    assert [bucket.take("k"), bucket.take("k")] == [0.0, 0.0]
    assert bucket.take("k") == pytest.approx(1.0)
    assert bucket.take("other") == 0.0  # buckets are per key
    now[0] = 1.0
    assert bucket.take("k") == 0.0


def test_app_refuses_to_start_without_a_key(
    responder: CatalogResponder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PRODTUNE_API_KEY", raising=False)
    for name in ("PRODTUNE_API_KEYS", "PRODTUNE_API_KEYS_DIR"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(InputError, match="PRODTUNE_API_KEY"):
        create_app(responder, settings=ApiSettings())
    monkeypatch.setenv("PRODTUNE_API_KEY", "from-env")
    c = TestClient(create_app(responder))
    assert c.get("/v1/models", headers={"Authorization": "Bearer from-env"}).status_code == 200
    assert "from-env" not in repr(ApiSettings())


class _Broken(CatalogResponder):
    def respond(self, *a: object, on_token=None, **k: object):  # type: ignore[override]
        if on_token is None:
            raise BackendError("ollama prodtune-qa:champion: model not found (HTTP 404)")
        on_token("partial ")
        raise BackendError("stream broke")


def test_backend_errors_are_502_or_in_band_when_streaming() -> None:
    c = TestClient(create_app(_Broken(PRODUCTS), settings=settings()))
    r = c.post("/v1/chat/completions", json=ask("tutu?"), headers=AUTH)
    assert r.status_code == 502 and r.json()["error"]["code"] == "backend_error"
    with c.stream("POST", "/v1/chat/completions", json=ask("tutu?", stream=True), headers=AUTH) as s:
        events = sse_events(list(s.iter_lines()))
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["error"]["message"] == "stream broke"


def test_every_key_has_its_own_bucket_and_keys_come_from_env_or_a_secret_dir(
    responder: CatalogResponder, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "keys"
    secret.mkdir()
    (secret / "ui").write_text("ui-key\n")
    (secret / "..data").mkdir()  # what a Secret volume mount also holds: skipped
    monkeypatch.setenv("PRODTUNE_API_KEYS", "batch=batch-key, alice=alice-key")
    monkeypatch.setenv("PRODTUNE_API_KEYS_DIR", str(secret))
    monkeypatch.delenv("PRODTUNE_API_KEY", raising=False)
    c = TestClient(create_app(responder, settings=ApiSettings(rate_burst=2, rate_per_minute=1)))

    def status(key: str) -> int:
        return c.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code

    assert [status("batch-key") for _ in range(3)] == [200, 200, 429]  # batch used up its bucket
    assert [status("alice-key"), status("ui-key")] == [200, 200]  # the others still have theirs
    r = c.get("/v1/models", headers={"Authorization": "Bearer batch-key"})
    assert "'batch'" in r.json()["error"]["message"] and "batch-key" not in r.text  # named, never shown
    assert status("nope") == 401


def test_unknown_paths_and_methods_answer_in_openai_error_shape(client: TestClient) -> None:
    r = client.get("/v1/nothing-here", headers=AUTH)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.get("/v1/chat/completions", headers=AUTH)
    assert r.status_code == 405 and set(r.json()["error"]) == {"message", "type", "param", "code"}
