"""End to end against the embedded teacher: llama-cpp-python's server on SmolLM2-135M (CPU).

The 135M model writes weak JSON and weak answers; the point is the path: a real OpenAI-compatible
server, grammar-constrained JSON after the json_schema fallback, validation, filtering, quarantine.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from components.synthesis.core import SynthesisConfig, run_synthesis
from pipelines.embedded.teacher import MODEL_ALIAS, TeacherServer, default_model_path

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # ~2 min on a busy 2-core CPU

PRODUCTS = [
    ["B000TEACH1", "Girls Ballet Tutu Neon Pink",
     "High quality 3 layer ballet tutu. 12 inches in length. "
     "Made of soft nylon tulle with an elastic waistband.",
     "train"],
    ["B000TEACH2", "Stainless Steel Travel Mug 450 ml",
     "Double wall stainless steel travel mug. Keeps coffee hot for 6 hours. "
     "Leak-proof lid, fits most car cup holders.",
     "train"],
    ["B000TEACH3", "Camiseta Algodão Orgânico Azul",
     "Camiseta de algodão orgânico na cor azul. Tecido macio e respirável, lavável na máquina.",
     "eval"],
]  # fmt: skip


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] not installed")
    model = default_model_path()
    if not model.is_file():
        pytest.skip(f"teacher model missing: {model} (run scripts/setup.sh)")
    log = tmp_path_factory.mktemp("teacher") / "teacher.log"
    with TeacherServer(model, n_ctx=2048, n_threads=1, log_path=log) as server:
        yield server


def test_local_teacher_end_to_end(teacher, tmp_path):
    inp = tmp_path / "data-3.csv"
    pd.DataFrame(PRODUCTS, columns=["uid", "title", "content", "split"]).to_csv(inp, index=False)
    cfg = SynthesisConfig(
        base_url=teacher.base_url,
        model=MODEL_ALIAS,
        pairs_per_product=2,
        max_tokens=160,
        temperature=0.2,
        concurrency=1,
        max_replies=2,
        timeout_s=180,
        cache_dir=tmp_path / "cache",
        prices={MODEL_ALIAS: {"input_per_mtok": 0, "output_per_mtok": 0}},
    )
    out = tmp_path / "out"
    summary = run_synthesis(cfg, inp, out, environ=teacher.env(), progress=False)

    assert summary["products"] == 3 == summary["with_pairs"] + sum(summary["quarantined"].values())
    assert summary["teacher_calls"] >= 3 and summary["tokens"]["completion"] > 0
    # llama-cpp-python rejects OpenAI's json_schema and takes its own json_object+schema (a grammar)
    assert summary["format_mode"] == "json_object_schema"
    qa = [json.loads(line) for line in (out / "dados-fine-tunning.jsonl").read_text().splitlines()]
    assert all(r["messages"][-1]["content"].strip() for r in qa)
    assert len((out / "describer-train.jsonl").read_text().splitlines()) == 2
    # the real yield, for the record (docs/synthesis.md)
    print("\nLOCAL TEACHER SUMMARY", json.dumps(summary))
    for row in qa[:3]:
        print("EXAMPLE", json.dumps(row["messages"][1:], ensure_ascii=False))
    print("DROPPED", (out / "dropped-pairs.jsonl").read_text()[:1500])

    # a rerun is free: every reply comes from the cache
    again = run_synthesis(cfg, inp, tmp_path / "again", environ=teacher.env(), progress=False)
    assert again["teacher_calls"] == 0 and again["requests"] == 0
    assert (tmp_path / "again" / "dados-fine-tunning.jsonl").read_bytes() == (
        out / "dados-fine-tunning.jsonl"
    ).read_bytes()


def test_a_model_the_real_server_does_not_serve_fails_fast(teacher, tmp_path):
    """llama-cpp-python's server answers a request for any model with its own (HTTP 200): without
    the check, a default config would silently train on a model nobody asked for."""
    from components.synthesis.client import TeacherModelError

    inp = tmp_path / "data-3.csv"
    pd.DataFrame(PRODUCTS, columns=["uid", "title", "content", "split"]).to_csv(inp, index=False)
    cfg = SynthesisConfig(base_url=teacher.base_url, model="gpt-4o-mini", cache_dir=tmp_path / "cache")
    with pytest.raises(TeacherModelError, match=r"'gpt-4o-mini'.*offers: smollm2-135m-instruct"):
        run_synthesis(cfg, inp, tmp_path / "out", environ=teacher.env(), progress=False)


def test_default_concurrency_steps_the_format_down_once_on_the_real_server(teacher, tmp_path):
    """The default config sends 8 requests at once; each json_schema request gets the server's 500.
    The old client stepped down once per rejection, into plain text, and quarantined everything."""
    inp = tmp_path / "data-3.csv"
    pd.DataFrame(PRODUCTS, columns=["uid", "title", "content", "split"]).to_csv(inp, index=False)
    cfg = SynthesisConfig(
        base_url=teacher.base_url, model=MODEL_ALIAS, prompt="qa_v2", pairs_per_product=1,
        max_tokens=96, temperature=0.2, concurrency=8, max_replies=1, timeout_s=300,
        cache_dir=tmp_path / "cache",
    )  # fmt: skip
    summary = run_synthesis(cfg, inp, tmp_path / "out", environ=teacher.env(), progress=False)
    assert summary["format_mode"] == "json_object_schema" and summary["format_fallbacks"] == 1
    assert summary["quarantined"].get("invalid_json", 0) == 0
    assert summary["requests"] == 4  # one rejected probe, then one reply per product
