"""The real training loop on the embedded model (SmolLM2-135M, CPU): LoRA learns, output contract, resume.

Tiny on purpose (few steps, short sequences, rank 4 on two projections): the CPU is shared.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from components.common.chat_format import describer_messages
from components.finetune.materialize import DEFAULT_OUTPUT as SMOL

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (SMOL / "config.json").is_file(), reason="run `python -m components.finetune.materialize`"
    ),
]
ROOT = Path(__file__).resolve().parents[2]

BRANDS = ["Sony", "Acme", "Bosch", "Canon"]
ITEMS = ["Desk Lamp", "Backpack", "Toaster", "Headphones"]


def _rows(n: int, split: str, offset: int = 0) -> list[dict]:
    rows = []
    for i in range(offset, offset + n):
        brand, item, size = BRANDS[i % 4], ITEMS[(i // 4) % 4], 10 + i % 7
        title = f"{brand} {item} {size} inch"
        desc = f"The {brand} {item.lower()} measures {size} inches."
        rows.append({"messages": describer_messages(title, desc), "uid": f"{split}-{i}", "split": split})
    return rows


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _config(**over) -> dict:
    cfg = {
        "task": "describer",
        "base_model": str(SMOL),
        "backend": "hf",
        "device": "cpu",
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
        "max_seq_length": 64,
        "per_device_batch_size": 2,
        "grad_accum": 1,
        "learning_rate": 1e-3,
        "max_steps": 3,
        "save_steps": 2,
        "seed": 7,
        "cpu_threads": 1,  # the CPU is shared
        "eval": {"max_examples": 2, "max_new_tokens": 8, "batch_size": 2},
    }
    cfg.update(over)
    return cfg


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("ftdata")
    return _write(d / "describer-train.jsonl", _rows(24, "train")), _write(
        d / "describer-eval.jsonl", _rows(2, "eval", 100)
    )


def test_lora_learns_and_output_dir_matches_the_export_contract(
    data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.torch import load_file

    from components.finetune.core import FinetuneConfig, run_finetune_tracked

    # A real MLflow store without a server: SQLite, artifacts under tmp_path (the cwd).
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("PRODTUNE_MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("PRODTUNE_MLFLOW_EXPERIMENT", "finetune-test")
    out = tmp_path / "ft"
    result = run_finetune_tracked(FinetuneConfig.model_validate(_config()), data[0], data[1], out)

    # LoRA weights moved: B starts at zero, so any non-zero B means the optimizer updated it.
    adapter = load_file(out / "adapter" / "adapter_model.safetensors")
    b_norms = [float(t.norm()) for k, t in adapter.items() if "lora_B" in k]
    assert b_norms and all(n > 0 for n in b_norms)
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["r"] == 4

    # merged/ = base + BA on the targeted projections only.
    base = load_file(SMOL / "model.safetensors")
    merged = load_file(out / "merged" / "model.safetensors")
    q = "model.layers.0.self_attn.q_proj.weight"
    k = "model.layers.0.self_attn.k_proj.weight"
    assert merged[q].dtype == base[q].dtype
    assert (merged[q].float() - base[q].float()).abs().max() > 0
    assert (merged[k].float() - base[k].float()).abs().max() == 0

    summary = json.loads((out / "finetune-summary.json").read_text())
    assert summary["task"] == "describer" and summary["backend"] == "hf" and summary["steps"] == 3
    assert len(summary["train_loss"]) == 3 and all(x > 0 for x in summary["train_loss"])
    assert summary["eos_tokens"][0] == "<|im_end|>" and "<|endoftext|>" in summary["eos_tokens"]
    assert "<|im_start|>" in summary["chat_template"]
    assert summary["config"]["lora"]["r"] == 4 and summary["base_model"] == str(SMOL)
    # the merged tokenizer carries the very template used in training
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(str(out / "merged")).chat_template == summary["chat_template"]
    gen = json.loads((out / "merged" / "generation_config.json").read_text())
    assert set(gen["eos_token_id"]) == {2, 0}

    ev = json.loads((out / "eval.json").read_text())
    assert ev["n_eval"] == 2 and set(ev["base"]) == set(ev["finetuned"])
    assert {"eval_loss", "rouge_l", "facts_recall", "stop_rate"} <= set(ev["base"])
    # the adapter changed the model's predictions of the held-out answers
    assert ev["base"]["eval_loss"] != ev["finetuned"]["eval_loss"]
    assert (out / "eval-table.md").read_text().count("|") > 10
    # the held-out rows go to the export step's eval gate, in chat form with the reference last
    held_out = [json.loads(line) for line in (out / "eval-examples.jsonl").read_text().splitlines()]
    assert len(held_out) == 2 and all(r["messages"][-1]["role"] == "assistant" for r in held_out)
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "checkpoints" / "checkpoint-3" / "trainer_state.json").is_file()
    assert result.summary == summary

    import mlflow

    run = mlflow.search_runs(experiment_names=["finetune-test"], output_format="list")[0]
    assert run.info.run_name == "finetune-describer"
    assert run.data.params["lora.r"] == "4" and run.data.params["max_steps"] == "3"
    assert run.data.metrics["base_eval_loss"] == pytest.approx(ev["base"]["eval_loss"])
    assert run.data.metrics["finetuned_rouge_l"] == pytest.approx(ev["finetuned"]["rouge_l"])
    curve = mlflow.MlflowClient().get_metric_history(run.info.run_id, "train_loss")
    assert sorted(m.step for m in curve) == [1, 2, 3]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"eval-table.md", "loss.png", "eval.json", "finetune-summary.json"} <= artifacts


RUNNER = textwrap.dedent(
    """
    import json, sys
    from components.finetune.core import FinetuneConfig, run_finetune
    cfg = FinetuneConfig.model_validate(json.loads(sys.argv[1]))
    r = run_finetune(cfg, sys.argv[2], sys.argv[3], sys.argv[4])
    print(json.dumps({"steps": r.summary["steps"], "resumed_from": r.summary["resumed_from"]}))
    """
)


def test_killed_run_resumes_from_its_checkpoint(data, tmp_path: Path) -> None:
    out = tmp_path / "ft"
    cfg = json.dumps(_config(max_steps=6, save_steps=2, eval={"max_examples": 0}))
    cmd = [sys.executable, "-c", RUNNER, cfg, str(data[0]), str(data[1]), str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": ""}

    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = out / "checkpoints" / "checkpoint-2" / "trainer_state.json"
    deadline = time.monotonic() + 900
    try:
        while not ckpt.is_file():
            assert first.poll() is None, "training ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 15 min"
            time.sleep(0.5)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert not (out / "finetune-summary.json").exists()
    killed_at = max(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("checkpoint-*"))
    assert killed_at < 6

    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, check=True)
    last = json.loads(second.stdout.strip().splitlines()[-1])
    assert last["resumed_from"] is not None and last["resumed_from"] != "checkpoint-0"
    resumed_at = int(last["resumed_from"].split("-")[1])
    assert 2 <= resumed_at <= killed_at
    assert last["steps"] == 6  # same total as an uninterrupted run

    state = json.loads((out / "checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())
    logged = [h["step"] for h in state["log_history"] if "loss" in h]
    assert logged == [1, 2, 3, 4, 5, 6]  # no step repeated, none skipped
    summary = json.loads((out / "finetune-summary.json").read_text())
    assert summary["steps_this_run"] == 6 - resumed_at
