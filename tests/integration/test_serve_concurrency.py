"""The API under concurrent load, for real: uvicorn on 127.0.0.1, the real router graph and store, the
production Ollama backend, and a protocol-faithful Ollama server (tests/fakes/ollama_server.py) that
takes a set time per reply. Clients are the official `openai` client and LangChain's `ChatOpenAI`."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from serving import graph
from serving.api.app import create_app
from serving.api.responder import GraphResponder
from serving.api.settings import ApiSettings
from serving.api.testing import serve_in_thread
from serving.config import ServingSettings
from serving.llm.ollama_backend import OllamaBackend
from serving.router.classifier import RouterClassifier
from tests.fakes.ollama_server import FakeOllama
from tests.fakes.retrieval import HashingEmbedder, build_store

pytestmark = pytest.mark.integration

KEY = "concurrency-key"
REPLY_S = 1.5


def make_app(fake: FakeOllama, *, concurrency: int, max_waiting: int) -> object:
    embedder = HashingEmbedder()
    store = build_store(embedder)

    def backend(name: str) -> OllamaBackend:
        return OllamaBackend(name, host=fake.url, concurrency=concurrency, max_waiting=max_waiting)

    responder = GraphResponder(
        graph.build_graph,
        classifier=RouterClassifier.from_path(),
        store=store,
        embedder=embedder,
        describer=backend("prodtune-describer:champion"),
        qa=backend("prodtune-qa:champion"),
        settings=ServingSettings(),
    )
    return create_app(responder, settings=ApiSettings(key=SecretStr(KEY), rate_burst=100))


@pytest.fixture
def slow_ollama() -> Iterator[FakeOllama]:
    with FakeOllama(latency_s=REPLY_S, parallel=8).running() as fake:
        yield fake


def test_eight_concurrent_requests_take_about_one_reply(slow_ollama: FakeOllama) -> None:
    import openai

    with serve_in_thread(make_app(slow_ollama, concurrency=8, max_waiting=8)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
        answers: list[str] = []

        def ask(i: int) -> None:
            r = client.chat.completions.create(
                model="prodtune-describer", messages=[{"role": "user", "content": f"Ballet Tutu No. {i}"}]
            )
            answers.append(r.choices[0].message.content or "")

        started = time.monotonic()
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
    assert len(answers) == 8 and all(a.startswith("It is a three layer") for a in answers)
    assert slow_ollama.log.max_in_flight == 8  # all eight generated at once, none serialised
    assert elapsed < 4 * REPLY_S  # serialised would be 8 x 1.5 s = 12 s


def test_finish_reason_length_and_usage_reach_openai_and_langchain_clients(slow_ollama: FakeOllama) -> None:
    import openai
    from langchain_openai import ChatOpenAI

    slow_ollama.latency_s = 0.1
    with serve_in_thread(make_app(slow_ollama, concurrency=2, max_waiting=4)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
        msgs = [{"role": "user", "content": "Girls Ballet Tutu Neon Pink"}]
        cut = client.chat.completions.create(model="prodtune-describer", messages=msgs, max_tokens=4)
        assert cut.choices[0].finish_reason == "length" and cut.model == "prodtune-describer"
        assert cut.usage is not None and cut.usage.completion_tokens == 4
        assert cut.usage.total_tokens == cut.usage.prompt_tokens + 4 and cut.usage.prompt_tokens > 0

        chunks = list(
            client.chat.completions.create(
                model="prodtune-describer",
                messages=msgs,
                max_tokens=4,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finishes == ["length"]
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == cut.choices[0].message.content

        llm = ChatOpenAI(
            base_url=f"{url}/v1",
            api_key=KEY,
            model="prodtune-describer",
            max_tokens=4,
            max_retries=0,
            stream_usage=True,
        )
        message = llm.invoke("Girls Ballet Tutu Neon Pink")
        assert message.response_metadata["finish_reason"] == "length"
        assert message.usage_metadata["output_tokens"] == 4
        streamed = None
        for piece in llm.stream("Girls Ballet Tutu Neon Pink"):
            streamed = piece if streamed is None else streamed + piece
        assert streamed is not None and streamed.usage_metadata["output_tokens"] == 4  # counted once
        assert streamed.content == message.content


def test_a_client_that_leaves_cancels_its_generation() -> None:
    fake = FakeOllama(reply=" ".join(["word"] * 300), latency_s=15.0, parallel=2)
    with fake.running(), serve_in_thread(make_app(fake, concurrency=2, max_waiting=2)) as url:
        headers = {"Authorization": f"Bearer {KEY}"}
        body = {
            "model": "prodtune-describer",
            "stream": True,
            "max_tokens": 300,
            "messages": [{"role": "user", "content": "Girls Ballet Tutu Neon Pink"}],
        }
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as r:
            for line in r.iter_lines():
                if '"content": "word' in line:
                    break  # one piece read, then the client goes away
        non_stream = {**body, "stream": False}
        with pytest.raises(httpx.ReadTimeout):  # a non-streaming client that gives up
            httpx.post(f"{url}/v1/chat/completions", json=non_stream, headers=headers, timeout=0.8)
        deadline = time.monotonic() + 10
        while fake.log.abandoned < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert fake.log.abandoned == 2 and fake.log.completed == 0  # both generations were stopped
    assert fake.log.tokens_sent < 100


def test_a_full_queue_is_503_with_retry_after() -> None:
    fake = FakeOllama(latency_s=2.0, parallel=1)
    with fake.running(), serve_in_thread(make_app(fake, concurrency=1, max_waiting=0)) as url:
        headers = {"Authorization": f"Bearer {KEY}"}
        body = {"model": "prodtune-describer", "messages": [{"role": "user", "content": "Tutu"}]}
        statuses: list[httpx.Response] = []

        def ask() -> None:
            statuses.append(httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30))

        first = threading.Thread(target=ask)
        first.start()
        deadline = time.monotonic() + 5
        while fake.log.in_flight < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        ask()  # the model is busy and nothing may queue
        first.join()
    busy = [r for r in statuses if r.status_code == 503]
    assert sorted(r.status_code for r in statuses) == [200, 503]
    assert busy[0].json()["error"]["code"] == "model_busy" and int(busy[0].headers["retry-after"]) >= 1
