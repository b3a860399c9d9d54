"""The synthesis step against a real HTTP server that injects faults (tests/fakes/openai_fault_server.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from components.synthesis.core import SynthesisConfig, run_synthesis
from tests.fakes import FaultServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-test-5f3c9e0d1b2a"
MATERIALS = ["cotton", "steel", "bamboo", "leather", "glass", "nylon", "oak", "wool"]


def product(i: int) -> list[str]:
    material = MATERIALS[i % len(MATERIALS)]
    content = (
        f"This organizer is made of {material} with a matte finish. "
        f"It measures {20 + i} centimetres across and holds {i + 2} items. "
        f"It works with standard desk drawers and cleans with a damp cloth."
    )
    return [f"p{i:03d}", f"Desk organizer model {i}", content, "eval" if i % 5 == 0 else "train"]


def write_products(path: Path, n: int, extra: list[list[str]] | None = None) -> Path:
    rows = [product(i) for i in range(n)] + (extra or [])
    pd.DataFrame(rows, columns=["uid", "title", "content", "split"]).to_csv(path, index=False)
    return path


def config(srv: FaultServer, tmp_path: Path, **kw) -> SynthesisConfig:
    base = {
        "base_url": srv.url,
        "model": "fault-model",
        "cache_dir": tmp_path / "cache",
        "base_delay_s": 0.01,
        "max_delay_s": 0.05,
        "concurrency": 8,
        "prices": {"fault-model": {"input_per_mtok": 0.15, "output_per_mtok": 0.6}},
    }
    return SynthesisConfig(**{**base, **kw})


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def servers():
    started: list[FaultServer] = []

    def make(**kw) -> FaultServer:
        srv = FaultServer(api_key=KEY, **kw).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


def run(cfg: SynthesisConfig, inp: Path, out: Path) -> dict:
    return run_synthesis(cfg, inp, out, environ={"OPENAI_API_KEY": KEY}, progress=False)


def test_every_product_ends_with_pairs_or_in_quarantine_with_a_reason(servers, tmp_path):
    srv = servers(
        retry_after=0.02,
        hang_s=1.0,
        per_uid={
            "p000": ["429", "500", "drop", "malformed", "503"],  # recovers on the 6th request
            "p001": ["429"] * 20,  # never recovers
            "p002": ["invalid"] * 3,
            "p003": ["prose"] * 3,
            "p004": ["invalid", "ok"],
            "p005": ["hang"],  # client timeout, then fine
            "p006": ["ungrounded"],
        },
    )
    extra = [
        ["p900", "No description", "", "train"],
        ["p007", "Duplicate uid", "Some other text here.", "train"],
    ]
    inp = write_products(tmp_path / "data-32.csv", 30, extra)
    out = tmp_path / "out"
    summary = run(config(srv, tmp_path, max_retries=5, timeout_s=0.5), inp, out)

    assert summary["products"] == 32
    assert summary["quarantined"] == {
        "duplicate_uid": 1,
        "empty_input": 1,
        "invalid_json": 1,
        "invalid_schema": 1,
        "no_supported_pairs": 1,
        "retries_exhausted": 1,
    }
    assert summary["with_pairs"] == 26
    assert summary["products"] == summary["with_pairs"] + sum(summary["quarantined"].values())

    qa = read_jsonl(out / "dados-fine-tunning.jsonl")
    quarantine = read_jsonl(out / "quarantine.jsonl")
    # each input row is accounted for exactly once: by its examples or by one quarantine record
    qa_uids = {r["uid"] for r in qa}
    quarantined_rows = Counter(r["row"] for r in quarantine)
    assert max(quarantined_rows.values()) == 1
    assert all(r["reason"] and r["detail"] is not None for r in quarantine)
    rows = pd.read_csv(inp, dtype=str, keep_default_na=False)
    for row, uid in enumerate(rows.uid):
        in_qa = uid in qa_uids and row not in quarantined_rows
        assert in_qa != (row in quarantined_rows), f"row {row} ({uid}) lost or counted twice"
    # never an empty example; at most K pairs per product, in the shared chat layout
    assert all(r["messages"][-1]["role"] == "assistant" and r["messages"][-1]["content"].strip() for r in qa)
    assert max(Counter(r["uid"] for r in qa).values()) <= 3
    assert {r["meta"]["prompt_version"] for r in qa} == {"qa-v1"}
    # the splits follow the input and partition the QA file
    train, evals = read_jsonl(out / "qa-train.jsonl"), read_jsonl(out / "qa-eval.jsonl")
    assert len(train) + len(evals) == len(qa) and {r["split"] for r in evals} == {"eval"}
    # the server saw exactly the attempts the policy allows
    requests = Counter(srv.uids())
    assert requests["p000"] == 6 and requests["p001"] == 6 and requests["p002"] == 3 and requests["p004"] == 2
    assert "p900" not in requests
    dropped = read_jsonl(out / "dropped-pairs.jsonl")
    assert {d["reason"] for d in dropped if d["uid"] == "p006"} == {"unsupported_answer"}
    assert summary["errors"]["http_429"] >= 6 and summary["errors"]["timeout"] == 1
    assert summary["tokens"]["prompt"] > 0 and summary["cost_usd"] > 0


def test_a_teacher_cap_asks_about_its_share_and_describes_every_product(servers, tmp_path):
    srv = servers()
    inp = write_products(tmp_path / "data-25.csv", 25, [["p900", "No description", "", "train"]])
    out = tmp_path / "out"
    summary = run(config(srv, tmp_path, teacher_products=10), inp, out)

    asked = set(srv.uids())
    assert len(asked) == 10 and summary["asked"] == 10 and summary["not_asked"] == 15
    # 5 of the 25 products are eval (every fifth): 2 of the 10 asked, the first two in sample order
    assert sorted(u for u in asked if int(u[1:]) % 5 == 0) == ["p000", "p005"]
    assert summary["with_pairs"] + sum(summary["quarantined"].values()) + 15 == summary["products"] == 26
    assert {r["uid"] for r in read_jsonl(out / "dados-fine-tunning.jsonl")} <= asked
    described = read_jsonl(out / "describer-train.jsonl") + read_jsonl(out / "describer-eval.jsonl")
    examples = summary["examples"]
    assert len(described) == 25 == examples["describer_train"] + examples["describer_eval"]


def test_retry_after_is_honoured(servers, tmp_path):
    srv = servers(retry_after=0.6, per_uid={"p000": ["429", "429"]})
    inp = write_products(tmp_path / "data-1.csv", 1)
    run(config(srv, tmp_path), inp, tmp_path / "out")
    times = [r.at for r in srv.log]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.6 and times[2] - times[1] >= 0.6


def test_concurrency_limit_is_respected(servers, tmp_path):
    srv = servers(latency_s=0.1)
    inp = write_products(tmp_path / "data-12.csv", 12)
    run(config(srv, tmp_path, concurrency=3), inp, tmp_path / "out")
    assert srv.max_in_flight == 3


def test_rerun_costs_no_calls_and_gives_the_same_files(servers, tmp_path):
    srv = servers(per_uid={"p001": ["invalid"] * 3, "p002": ["500"] * 10})
    inp = write_products(tmp_path / "data-10.csv", 10)
    cfg = config(srv, tmp_path, max_retries=2)
    first = run(cfg, inp, tmp_path / "a")
    calls_first = srv.count()
    second = run(cfg, inp, tmp_path / "b")
    # only the product whose transport failed is asked again: replies (even invalid ones) are cached
    assert srv.uids(since=calls_first) == ["p002"] * 3
    assert second["cached_replies_used"] == 8 + 3  # 8 good replies + 3 invalid ones for p001
    assert second["teacher_calls"] == 0 and second["tokens"]["prompt"] == 0
    for name in ("dados-fine-tunning.jsonl", "describer-train.jsonl", "quarantine.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert first["quarantined"] == second["quarantined"] == {"invalid_schema": 1, "retries_exhausted": 1}


def test_killed_run_resumes_without_repeating_finished_products(servers, tmp_path):
    srv = servers(latency_s=0.25)
    n = 24
    inp = write_products(tmp_path / f"data-{n}.csv", n)
    cache = tmp_path / "cache"
    script = textwrap.dedent(
        f"""
        from components.synthesis.core import SynthesisConfig, run_synthesis
        cfg = SynthesisConfig(
            base_url={srv.url!r}, model="fault-model", cache_dir={str(cache)!r}, concurrency=2
        )
        run_synthesis(cfg, {str(inp)!r}, {str(tmp_path / "killed")!r}, progress=False)
        """
    )
    env = {**os.environ, "OPENAI_API_KEY": KEY, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env)
    entries = lambda: list(cache.rglob("*.json"))  # noqa: E731
    deadline = time.monotonic() + 60
    while len(entries()) < 6 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {json.loads(p.read_text())["uid"] for p in entries()}
    calls_before = srv.count()
    assert 6 <= len(finished) < n, "the run was not killed half-way"
    assert not (tmp_path / "killed" / "synthesis-summary.json").exists()

    summary = run(config(srv, tmp_path, concurrency=4), inp, tmp_path / "resumed")
    asked_again = srv.uids(since=calls_before)
    assert not finished & set(asked_again), "finished products were requested again"
    assert sorted(asked_again) == sorted({f"p{i:03d}" for i in range(n)} - finished)
    assert summary["with_pairs"] == n and summary["cached_replies_used"] == len(finished)
    qa = read_jsonl(tmp_path / "resumed" / "dados-fine-tunning.jsonl")
    per_uid = Counter(r["uid"] for r in qa)
    assert set(per_uid) == {f"p{i:03d}" for i in range(n)} and set(per_uid.values()) == {3}


@pytest.mark.parametrize("status", [400, 500])  # OpenAI-style 400, llama-cpp-python's 500
def test_structured_output_falls_back_when_json_schema_is_rejected(servers, tmp_path, status):
    srv = servers(reject_json_schema=True, reject_status=status)
    inp = write_products(tmp_path / "data-3.csv", 3)
    summary = run(config(srv, tmp_path, concurrency=1), inp, tmp_path / "out")
    assert summary["with_pairs"] == 3
    assert summary["format_mode"] == "json_object_schema" and summary["format_fallbacks"] == 1
    assert [r.response_format for r in srv.log] == [
        "json_schema",
        "json_object",
        "json_object",
        "json_object",
    ]


def test_cli_reads_openai_env_and_never_prints_the_key(servers, tmp_path, monkeypatch):
    import typer
    from typer.testing import CliRunner

    from pipelines.commands import synthesis as cmd

    app = typer.Typer()
    cmd.register(app)
    app.command("noop")(lambda: None)  # a second command keeps "synthesize" a subcommand
    srv = servers()
    inp = write_products(tmp_path / "data-4.csv", 4)
    monkeypatch.setenv("OPENAI_BASE_URL", srv.url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("PRODTUNE_TEACHER_MODEL_ID", "fault-model")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = ["synthesize", "--input", str(inp), "--output-dir", str(tmp_path / "out"),
            "--cache-dir", str(tmp_path / "cache"), "--no-progress"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["products"] == 4 and summary["with_pairs"] == 4
    on_disk = [p.read_text(encoding="utf-8") for p in (tmp_path / "out").iterdir()]
    on_disk += [p.read_text(encoding="utf-8") for p in (tmp_path / "cache").rglob("*.json")]
    assert KEY not in result.output and not any(KEY in text for text in on_disk)

    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-123")
    from components.common.errors import InputError

    result = CliRunner().invoke(app, [*args[:-2], str(tmp_path / "cache2"), "--no-progress"])
    assert isinstance(result.exception, InputError)
    assert "refused the API key" in str(result.exception) and "sk-wrong" not in str(result.exception)


def test_a_model_the_server_does_not_serve_fails_fast_naming_both(servers, tmp_path):
    from components.synthesis.client import TeacherModelError

    # what a stock llama.cpp server does when asked for a model it does not have: 500 to everything
    srv = servers(served_models=("smollm2-135m-instruct",), unknown_model_status=500)
    inp = write_products(tmp_path / "data-5.csv", 5)
    with pytest.raises(TeacherModelError) as err:
        run(config(srv, tmp_path, model="gpt-4o-mini"), inp, tmp_path / "out")
    message = str(err.value)
    assert "'gpt-4o-mini'" in message and "smollm2-135m-instruct" in message and "\n" not in message
    assert srv.models_requests == 1 and srv.count() == 0  # no chat request, nothing quarantined
    assert not (tmp_path / "out" / "synthesis-summary.json").exists()


def test_a_500_is_retried_and_never_changes_the_output_format(servers, tmp_path):
    # 500s before any success: the old client took them for "format unsupported" and stepped down
    srv = servers(by_request={1: "500", 2: "500_format", 3: "503"})
    inp = write_products(tmp_path / "data-6.csv", 6)
    summary = run(config(srv, tmp_path, concurrency=4), inp, tmp_path / "out")
    assert summary["with_pairs"] == 6 and summary["format_fallbacks"] == 0
    assert summary["format_mode"] == "json_schema" and summary["retries"] == 3
    assert {r.response_format for r in srv.log} == {"json_schema"}


@pytest.mark.parametrize("status", [400, 500])
def test_format_steps_down_once_however_many_requests_are_in_flight(servers, tmp_path, status):
    srv = servers(reject_json_schema=True, reject_status=status, latency_s=0.05)
    inp = write_products(tmp_path / "data-24.csv", 24)
    summary = run(config(srv, tmp_path, concurrency=8), inp, tmp_path / "out")
    assert summary["with_pairs"] == 24
    assert summary["format_mode"] == "json_object_schema" and summary["format_fallbacks"] == 1
    formats = [r.response_format for r in srv.log]
    assert formats == ["json_schema"] + ["json_object"] * 24  # one probe, then the decided mode
    assert srv.max_in_flight > 1  # after the decision, requests run concurrently again


def test_qa_v2_names_the_facts_and_keeps_grounded_pairs(servers, tmp_path):
    srv = servers(served_models=("other-model", "fault-model"), unknown_model_status=500)
    inp = write_products(tmp_path / "data-5.csv", 5)
    summary = run(config(srv, tmp_path, prompt="qa_v2", pairs_per_product=1), inp, tmp_path / "out")
    assert summary["with_pairs"] == 5 and summary["prompt_version"] == "qa-v2"
    qa = read_jsonl(tmp_path / "out" / "dados-fine-tunning.jsonl")
    assert len(qa) == 5 and {r["meta"]["prompt_version"] for r in qa} == {"qa-v2"}
    assert srv.models_requests == 1  # the model check passed: the model is served


def test_a_teacher_that_never_answers_stops_the_step_naming_host_and_cause(servers, tmp_path):
    """Seen with a llama.cpp build that segfaulted on the first prompt: every product ended as
    retries_exhausted and the pipeline only failed later, in the fine-tune, for want of rows."""
    from components.synthesis.client import TeacherUnreachableError

    srv = servers(by_request={i: "drop" for i in range(1, 200)})
    inp = write_products(tmp_path / "data-3.csv", 3)
    with pytest.raises(TeacherUnreachableError) as err:
        run(config(srv, tmp_path), inp, tmp_path / "out")
    message = str(err.value)
    assert "127.0.0.1" in message and "connection" in message and "3 products" in message
    assert "\n" not in message and KEY not in message
    quarantined = read_jsonl(tmp_path / "out" / "quarantine.jsonl")  # nothing is lost: all written
    assert [q["reason"] for q in quarantined] == ["retries_exhausted"] * 3
