"""`prodtune serve` end to end on real parts: SmolLM2-135M GGUF (llama.cpp) as both models, the real
all-MiniLM embedder, a real embedded vector store, the real router graph; asked with the openai client."""

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

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # about 2 min on 2 busy cores

ROOT = Path(__file__).resolve().parents[2]
SMOLLM = Path("~/.cache/prodtune/models/SmolLM2-135M-Instruct.Q4_1.gguf").expanduser()
KEY = "real-serve-key"
PRODUCTS = [
    ("0000031909", "Girls Ballet Tutu Neon Pink", "High quality 3 layer ballet tutu. 12 inches in length."),
    ("B000FQ2JLW", "Stainless Steel Insulated Water Bottle", "Keeps drinks cold for 24 hours, 750 ml."),
    ("B00BXLSPZE", "Kids Ballet Slippers Pink Leather", "Full sole leather ballet shoes for girls."),
]
SERVE = "import typer; from pipelines.commands import serve; app = typer.Typer(); serve.register(app); app()"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def needs_llama() -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed")
    if not SMOLLM.is_file():
        pytest.skip(f"test GGUF missing: {SMOLLM}")


@pytest.fixture(scope="module")
def store_dir(needs_llama: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from serving.config import ServingSettings
    from serving.retrieval.embedded import EmbeddedStore
    from serving.retrieval.embedder import SentenceEmbedder

    embedder = SentenceEmbedder(ServingSettings().embedding_model_path)
    store = EmbeddedStore(embedder.dim)
    uids, titles, contents = zip(*PRODUCTS, strict=True)
    store.add(uids, titles, contents, embedder.encode([f"{t}. {c}" for _, t, c in PRODUCTS]))
    return store.save(tmp_path_factory.mktemp("store"))


def test_serve_answers_with_real_models_and_store(store_dir: Path, tmp_path: Path) -> None:
    import openai

    port = _free_port()
    env = {
        **os.environ,
        "PRODTUNE_API_KEY": KEY,
        "PRODTUNE_LLM_BACKEND": "llamacpp",
        "PRODTUNE_LLM_QA_PATH": str(SMOLLM),
        "PRODTUNE_LLM_DESCRIBER_PATH": str(SMOLLM),
        "PRODTUNE_LLM_N_THREADS": "1",
        "PRODTUNE_SERVING_STORE_PATH": str(store_dir),
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                ready = httpx.get(f"{base}/readyz", timeout=2)
                if ready.status_code == 200 or ready.json().get("error"):
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not become ready"
            time.sleep(1)
        assert ready.status_code == 200, ready.text

        client = openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0, timeout=120)
        models = {m.id: m.model_extra["prodtune"] for m in client.models.list()}
        assert models["prodtune-qa"]["source"] == "path" and models["prodtune-qa"]["backend"] == "llamacpp"

        question = "How long is the girls ballet tutu?"
        done = client.chat.completions.create(
            model="prodtune-router",
            messages=[{"role": "user", "content": question}],
            max_tokens=32,
            extra_body={"prodtune": {"threshold": 30}},
        )
        ext = done.model_extra["prodtune"]
        assert ext["route"] == "answer"
        assert ext["sources"][0]["uid"] == "0000031909" and ext["sources"][0]["score"] >= 0.3
        assert done.choices[0].message.content.strip()
        assert 0 < done.usage.completion_tokens <= 32

        chunks = list(
            client.chat.completions.create(
                model="prodtune-describer",
                messages=[{"role": "user", "content": "Kids Ballet Slippers Pink Leather"}],
                max_tokens=24,
                stream=True,
            )
        )
        pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
        assert len(pieces) > 2  # tokens arrived one by one
        assert chunks[-1].model_extra["prodtune"]["route"] == "describe"
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert "prodtune serve: qa: llamacpp SmolLM2-135M-Instruct.Q4_1 from path" in out
    assert KEY not in out
