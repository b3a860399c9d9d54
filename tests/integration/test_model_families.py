"""Qwen2.5 and Llama 3.2 through the whole CPU path, with the project's own commands.

Per family, on a tiny random-weight checkpoint of the published architecture with the real tokenizer
and chat template (tests/fixtures/family_models.py): `prodtune finetune` (LoRA, a few steps) -> merged/
-> `prodtune export` (F16 + Q4_K_M + Q8_0, fidelity gate, Modelfile) -> llama.cpp loads and generates,
its tokens equal HF's for the rendered prompts -> `prodtune serve` (serving's llama.cpp backend)
answers the describe and the answer route. A wrong GGUF template still fails the export gate.

Each stage's outcome is written to `$PRODTUNE_FAMILY_REPORT` (a JSON file) when set, which is how
docs/model-families.md's table was measured. Slow: about 2-4 minutes per family on 2 busy cores.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
pytest.importorskip("quicktok", reason="quicktok-v1 (dev dependency) not installed")
pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed")

from components.common import chat_format  # noqa: E402
from tests.fixtures import family_models as fm  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SDIST = Path(os.environ.get("PRODTUNE_CACHE", Path.home() / ".cache" / "prodtune")) / "sdist"
TASK = {"qwen2.5": "describer", "llama3.2": "qa"}  # the production pairing
STOPS = {
    "qwen2.5": ["<|im_end|>", "<|endoftext|>"],
    "llama3.2": ["<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"],
}
PRODUCTS = [
    ("0000031909", "Girls Ballet Tutu Neon Pink", "High quality 3 layer ballet tutu. 12 inches in length."),
    ("B000FQ2JLW", "Stainless Steel Insulated Water Bottle", "Keeps drinks cold for 24 hours, 750 ml."),
    ("B00BXLSPZE", "Kids Ballet Slippers Pink Leather", "Full sole leather ballet shoes for girls."),
]
KEY = "family-serve-key"
SERVE = "import typer; from pipelines.commands import serve; app = typer.Typer(); serve.register(app); app()"
RESULTS: dict[str, dict[str, Any]] = {}


def _record(family: str, stage: str, passed: bool, **detail: Any) -> None:
    RESULTS.setdefault(family, {})[stage] = {"passed": passed, **detail}
    path = os.environ.get("PRODTUNE_FAMILY_REPORT")
    if path:
        Path(path).write_text(json.dumps(RESULTS, indent=2), encoding="utf-8")


def _prodtune(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PRODTUNE_LOG_LEVEL": "WARNING"}
    env.pop("MLFLOW_TRACKING_URI", None)  # no registry here: export skips publishing
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def _rows(task: str, n: int, split: str) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        uid, title, content = PRODUCTS[i % len(PRODUCTS)]
        if task == "describer":
            messages = chat_format.describer_messages(f"{title} {i}", content)
        else:
            messages = chat_format.qa_messages(
                f"What about the {title.lower()}?", [(title, content)], content
            )
        rows.append({"uid": f"{uid}-{split}-{i}", "messages": messages})
    return rows


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _recipe(path: Path, task: str, base: Path) -> Path:
    import yaml

    recipe = {
        "task": task,
        "base_model": str(base),
        "chat_template": "auto",
        "backend": "hf",
        "device": "cpu",
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
        "max_seq_length": 160,
        "per_device_batch_size": 2,
        "grad_accum": 1,
        "learning_rate": 2.0e-3,
        "max_steps": 4,
        "save_steps": 50,
        "seed": 7,
        "cpu_threads": 1,
        "eval": {"max_examples": 2, "max_new_tokens": 8, "batch_size": 2},
    }
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def _export_config(path: Path, tools: Path) -> Path:
    import yaml

    cfg = yaml.safe_load((ROOT / "pipelines" / "configs" / "export.yaml").read_text(encoding="utf-8"))
    cfg.update(
        sdist_path=str(SDIST / "llama_cpp_python-0.3.36.tar.gz"),
        tools_dir=str(tools),
        threads=1,
        n_ctx=512,
        speed_tokens=8,
        perplexity_max_tokens=128,
        publish=False,
    )
    cfg["fidelity"]["n_tokens"] = 12
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


@pytest.fixture(scope="module", params=list(fm.FAMILIES))
def pipeline(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run finetune -> export for one family; stages are asserted by the tests below."""
    family = request.param
    task = TASK[family]
    if not (SDIST / "llama_cpp_python-0.3.36.tar.gz").is_file():
        pytest.skip("llama-cpp-python sdist missing (scripts/setup.sh)")
    root = tmp_path_factory.mktemp(f"family-{family}")
    base = fm.build_tiny_checkpoint(family, root / "base")
    train = _write_jsonl(root / f"{task}-train.jsonl", _rows(task, 12, "train"))
    evalf = _write_jsonl(root / f"{task}-eval.jsonl", _rows(task, 2, "eval"))
    started = time.monotonic()
    ft = _prodtune(
        "finetune", "--config", str(_recipe(root / "recipe.yaml", task, base)),
        "--train", str(train), "--eval", str(evalf), "--output-dir", str(root / "ft"), "--no-resume",
    )  # fmt: skip
    ft_s = time.monotonic() - started
    started = time.monotonic()
    tools = tmp_path_factory.getbasetemp() / "llama.cpp-0.3.36"
    ex = _prodtune(
        "export", "--model-dir", str(root / "ft"), "--output-dir", str(root / "export"),
        "--config", str(_export_config(root / "export.yaml", tools)), "--no-publish",
    )  # fmt: skip
    ex_s = time.monotonic() - started
    return {
        "family": family, "task": task, "root": root, "base": base, "ft": ft, "ex": ex,
        "ft_s": ft_s, "ex_s": ex_s, "tools": tools,
    }  # fmt: skip


def test_finetune_trains_masks_and_merges(pipeline: dict[str, Any]) -> None:
    family, ft, root = pipeline["family"], pipeline["ft"], pipeline["root"]
    ok = ft.returncode == 0
    _record(
        family, "train", ok, seconds=round(pipeline["ft_s"], 1), stderr=ft.stderr[-400:] if not ok else ""
    )
    assert ok, ft.stderr[-3000:]
    summary = json.loads((root / "ft" / "finetune-summary.json").read_text())
    assert summary["chat_family"] == {"qwen2.5": "chatml", "llama3.2": "llama3"}[family]
    assert summary["eos_tokens"] == STOPS[family]
    losses = summary["train_loss"]
    assert summary["steps"] == 4 and len(losses) == 4 and all(v == v for v in losses)
    if family == "llama3.2":
        assert summary["date_string"] == "26 Jul 2024"
        assert summary["chat_template"].startswith('{%- set date_string = "26 Jul 2024" -%}')
    merged = root / "ft" / "merged"
    cfg = json.loads((merged / "config.json").read_text())
    ok_merge = (merged / "model.safetensors").is_file() and cfg["architectures"] == fm.spec(family).config[
        "architectures"
    ]
    _record(family, "merge", ok_merge, architectures=cfg["architectures"], dtype=cfg.get("dtype"))
    assert ok_merge
    assert cfg.get("tie_word_embeddings") is (family == "llama3.2")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(merged))
    assert tok.chat_template == summary["chat_template"]  # merged/ carries the training template
    # Masking, token by token, with the fine-tune's own tokenization on the merged tokenizer.
    from components.finetune.core import tokenize_example

    messages = _rows(pipeline["task"], 1, "mask")[0]["messages"]
    row = tokenize_example(tok, messages, summary["chat_template"], 160, summary["turn_end"])
    prompt_ok = row.labels[: row.prompt_len] == [-100] * row.prompt_len
    completion_ok = row.labels[row.prompt_len :] == row.input_ids[row.prompt_len :]
    stop_in_loss = tok.convert_tokens_to_ids(summary["turn_end"]) in row.labels[row.prompt_len :]
    _record(family, "mask", prompt_ok and completion_ok and stop_in_loss, prompt_tokens=row.prompt_len)
    assert prompt_ok and completion_ok and stop_in_loss


def test_export_converts_quantizes_and_passes_the_gate(pipeline: dict[str, Any]) -> None:
    family, ex, root = pipeline["family"], pipeline["ex"], pipeline["root"]
    out = root / "export"
    summary_path = out / "export-summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    levels = summary.get("levels", {})
    files = summary.get("files", {})
    _record(family, "convert", "F16" in files and (out / files["F16"]).is_file())
    _record(
        family,
        "quantize",
        {"Q4_K_M", "Q8_0"} <= set(files),
        sizes={k: v["size_bytes"] for k, v in levels.items()},
    )
    fid = summary.get("fidelity", {})
    _record(
        family, "gate", ex.returncode == 0 and bool(fid.get("passed")), seconds=round(pipeline["ex_s"], 1),
        reason=fid.get("reason", ex.stderr[-400:]),
        token_agreement={k: round(v["token_agreement"], 3) for k, v in levels.items()},
        prefix_match={k: round(v["prefix_match"], 3) for k, v in levels.items()},
        eval_gate={k: summary.get("eval_gate", {}).get(k) for k in ("passed", "base", "finetuned")},
    )  # fmt: skip
    assert ex.returncode == 0, ex.stderr[-3000:]
    assert fid["passed"], fid
    assert set(levels) == {"F16", "Q4_K_M", "Q8_0"}
    assert all(row["prompt_tokens_match"] for row in levels.values())

    from components.export.modelfile import parse_modelfile

    mf = parse_modelfile((out / "Modelfile").read_text())
    assert mf.stops == STOPS[family]
    assert mf.system == (
        chat_format.DESCRIBER_SYSTEM if pipeline["task"] == "describer" else chat_format.QA_SYSTEM
    )
    if family == "llama3.2":
        assert "Today Date: 26 Jul 2024" in mf.template


def test_llama_cpp_tokens_equal_hf_and_it_generates(pipeline: dict[str, Any]) -> None:
    import llama_cpp
    from transformers import AutoTokenizer

    family, root = pipeline["family"], pipeline["root"]
    out = root / "export"
    summary = json.loads((out / "export-summary.json").read_text())
    tok = AutoTokenizer.from_pretrained(str(root / "ft" / "merged"))
    llm = llama_cpp.Llama(
        model_path=str(out / summary["files"]["Q8_0"]), n_ctx=512, n_threads=1, verbose=False
    )
    try:
        convs = [
            chat_format.describer_messages(PRODUCTS[0][1]),
            chat_format.qa_messages("Is it pink?", [PRODUCTS[0][1:]]),
        ]
        matches = []
        for messages in convs:
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            hf_ids = tok(text, add_special_tokens=False)["input_ids"]
            # llama.cpp adds BOS itself where the model has one (Llama 3): the text then carries none
            bos = tok.bos_token if family == "llama3.2" else None
            body = text[len(bos) :] if bos and text.startswith(bos) else text
            cpp_ids = llm.tokenize(body.encode(), add_bos=bos is not None, special=True)
            matches.append(cpp_ids == hf_ids)
        reply = llm.create_chat_completion(messages=convs[0], max_tokens=8, temperature=0.0)
    finally:
        llm.close()
    generated = reply["usage"]["completion_tokens"]
    _record(
        family, "llama.cpp", all(matches) and generated > 0, tokens_match=matches, completion_tokens=generated
    )
    assert all(matches)
    assert generated > 0


def test_wrong_gguf_template_fails_the_gate(pipeline: dict[str, Any], tmp_path: Path) -> None:
    """The GGUF keeps a template of the right family but without the date pin: the gate must fail."""
    from transformers import AutoTokenizer

    from components.export.core import ExportConfig, run_fidelity_gate
    from components.export.fidelity import default_golden
    from components.export.gguf import set_chat_template

    family, root = pipeline["family"], pipeline["root"]
    out = root / "export"
    summary = json.loads((out / "export-summary.json").read_text())
    merged = root / "ft" / "merged"
    tok = AutoTokenizer.from_pretrained(str(merged))
    published = fm.chat_template(fm.spec(family))  # the base template: Qwen default system, Llama's today
    wrong = published if family == "llama3.2" else published.replace("You are Qwen", "You are Wen")
    bad = set_chat_template(out / summary["files"]["F16"], tmp_path / "bad.gguf", wrong, pipeline["tools"])
    (tmp_path / "Modelfile").write_text((out / "Modelfile").read_text())
    cfg = ExportConfig(
        sdist_path=SDIST / "llama_cpp_python-0.3.36.tar.gz", tools_dir=pipeline["tools"], n_ctx=512
    )
    result = run_fidelity_gate(
        merged, tok, tok.chat_template, tmp_path / "Modelfile", {"F16": bad}, default_golden(pipeline["task"]), cfg
    )  # fmt: skip
    assert result["fidelity"]["passed"] is False
    assert "gguf:F16 != training" in result["fidelity"]["reason"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_both_routes(pipeline: dict[str, Any], tmp_path: Path) -> None:
    import httpx
    import openai

    from serving.config import ServingSettings
    from serving.retrieval.embedded import EmbeddedStore
    from serving.retrieval.embedder import SentenceEmbedder

    family, root = pipeline["family"], pipeline["root"]
    out = root / "export"
    summary = json.loads((out / "export-summary.json").read_text())
    gguf = out / summary["files"]["Q8_0"]
    embedder = SentenceEmbedder(ServingSettings().embedding_model_path)
    store = EmbeddedStore(embedder.dim)
    uids, titles, contents = zip(*PRODUCTS, strict=True)
    store.add(uids, titles, contents, embedder.encode([f"{t}. {c}" for _, t, c in PRODUCTS]))
    store_dir = store.save(tmp_path / "store")
    port = _free_port()
    env = {
        **os.environ, "PRODTUNE_API_KEY": KEY, "PRODTUNE_LLM_BACKEND": "llamacpp",
        "PRODTUNE_LLM_QA_PATH": str(gguf), "PRODTUNE_LLM_DESCRIBER_PATH": str(gguf),
        "PRODTUNE_LLM_N_THREADS": "1", "PRODTUNE_LLM_N_CTX": "1024",
        "PRODTUNE_SERVING_STORE_PATH": str(store_dir), "PYTHONPATH": str(ROOT),
    }  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    routes: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 240
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
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0, timeout=180)
        for question in ("How long is the girls ballet tutu?", "Kids Ballet Slippers Pink Leather"):
            done = client.chat.completions.create(
                model="prodtune-router",
                messages=[{"role": "user", "content": question}],
                max_tokens=8,
                extra_body={"prodtune": {"threshold": 30}},
            )
            routes[done.model_extra["prodtune"]["route"]] = done.usage.completion_tokens
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    ok = set(routes) == {"answer", "describe"} and all(n > 0 for n in routes.values())
    _record(family, "serve", ok, completion_tokens=routes)
    assert ok, routes
