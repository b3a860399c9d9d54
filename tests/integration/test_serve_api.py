"""The API under a real uvicorn on 127.0.0.1, driven by the official `openai` client; and `prodtune serve`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from serving.api.app import create_app
from serving.api.settings import ApiSettings
from serving.api.testing import CatalogResponder, serve_in_thread

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KEY = "integration-key"
PRODUCTS = [
    (
        "0000031909",
        "Girls Ballet Tutu Neon Pink",
        "A three layer ballet tutu, 12 inches long, elastic waist.",
    ),
    ("B00002SWLN", "Stainless Steel Water Bottle", "Keeps drinks cold for 24 hours."),
]


@pytest.fixture(scope="module")
def base_url():  # type: ignore[no-untyped-def]
    app = create_app(CatalogResponder(PRODUCTS), settings=ApiSettings(key=SecretStr(KEY)))
    with serve_in_thread(app) as url:
        yield url


def test_openai_client_lists_models_completes_and_streams(base_url: str) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=KEY, max_retries=0)
    assert [m.id for m in client.models.list()] == ["prodtune-router", "prodtune-describer", "prodtune-qa"]

    question = "What length is the girls ballet tutu?"
    extra = {"prodtune": {"threshold": 20}}
    completion = client.chat.completions.create(
        model="prodtune-router",
        messages=[{"role": "user", "content": question}],
        max_tokens=64,
        extra_body=extra,
    )
    assert "12 inches" in completion.choices[0].message.content
    ext = completion.model_extra["prodtune"]
    assert ext["route"] == "answer" and ext["sources"][0]["uid"] == "0000031909"

    stream = client.chat.completions.create(
        model="prodtune-router",
        messages=[{"role": "user", "content": question}],
        stream=True,
        extra_body=extra,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.strip() == completion.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].model_extra["prodtune"]["sources"][0]["uid"] == "0000031909"


def test_openai_client_sees_auth_and_validation_errors(base_url: str) -> None:
    import openai

    bad = openai.OpenAI(base_url=f"{base_url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    good = openai.OpenAI(base_url=f"{base_url}/v1", api_key=KEY, max_retries=0)
    with pytest.raises(openai.UnprocessableEntityError) as err:
        good.chat.completions.create(
            model="prodtune-qa", messages=[{"role": "user", "content": "x"}], temperature=3
        )
    assert err.value.body["param"] == "temperature"
    with pytest.raises(openai.NotFoundError):
        good.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, status: int, timeout: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code == status:
                return r
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer {status} within {timeout}s")
        time.sleep(0.3)


SERVE = "import typer; from pipelines.commands import serve; app = typer.Typer(); serve.register(app); app()"


def test_prodtune_serve_starts_api_and_ui_and_reports_a_failed_model_load(tmp_path: Path) -> None:
    port, ui_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "PRODTUNE_API_KEY": KEY,
        "PRODTUNE_LLM_BACKEND": "llamacpp",
        "PRODTUNE_LLM_QA_PATH": str(tmp_path / "missing-qa.gguf"),
        "PRODTUNE_LLM_DESCRIBER_PATH": str(tmp_path / "missing-describer.gguf"),
        "PYTHONPATH": str(ROOT),
        "HOME": str(tmp_path),  # Streamlit writes ~/.streamlit
    }
    args = [sys.executable, "-c", SERVE, "--port", str(port), "--ui", "--ui-port", str(ui_port)]
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert _wait(f"http://127.0.0.1:{port}/healthz", 200).json() == {"status": "ok"}
        ready = _wait(f"http://127.0.0.1:{port}/readyz", 503).json()
        for _ in range(50):  # the loader fails quickly; /readyz then carries its reason
            if ready.get("error"):
                break
            time.sleep(0.2)
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz").json()
        assert ready["status"] == "failed" and "missing-describer.gguf" in ready["error"]
        assert _wait(f"http://127.0.0.1:{ui_port}/_stcore/health", 200, timeout=90).text == "ok"
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert f"API: http://127.0.0.1:{port}" in out
    assert f"UI:  http://127.0.0.1:{ui_port}" in out
    assert KEY not in out  # the key is never printed
