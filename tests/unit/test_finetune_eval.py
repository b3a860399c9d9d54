"""Evaluation metrics (hand-checked values), the markdown table and the loss plot."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import pytest

from components.finetune.evaluate import (
    eval_table,
    facts_recall,
    lcs_length,
    plot_loss,
    rouge_l,
    salient_facts,
    score,
    token_f1,
)


def test_lcs_and_rouge_l_by_hand() -> None:
    assert lcs_length(["a", "b", "c", "d"], ["a", "c", "d", "e"]) == 3
    assert rouge_l("a b c d", "a c d e") == pytest.approx(0.75)  # P = R = 3/4
    assert rouge_l("A, b!", "a b") == 1.0  # case and punctuation do not count
    assert rouge_l("x y", "a b") == 0.0
    assert rouge_l("", "a b") == 0.0
    # P = 2/2, R = 2/4 -> F1 = 2/3
    assert rouge_l("a d", "a b c d") == pytest.approx(2 / 3)


def test_salient_facts_numbers_units_brands() -> None:
    ref = "The Sony WH-1000XM4 weighs 254 g. Battery lasts 30 hours, with USB charging and iPhone support."
    facts = salient_facts(ref)
    assert {"sony", "wh", "1000xm4", "254", "g", "30", "usb", "iphone"} <= facts
    assert "the" not in facts and "battery" not in facts  # sentence-initial capitals are not names
    assert "hours" not in facts and "weighs" not in facts
    assert salient_facts("a plain lowercase sentence.") == set()


def test_facts_recall() -> None:
    ref = "Made by Acme, 12 inches long."
    assert salient_facts(ref) == {"acme", "12", "inches"}
    assert facts_recall("acme sells a 12 inch thing", ref) == pytest.approx(2 / 3)
    assert facts_recall("nothing relevant", ref) == 0.0
    assert facts_recall("anything", "no facts here.") is None


def test_token_f1_squad_style() -> None:
    assert token_f1("The battery lasts 30 hours.", "battery lasts 30 hours") == 1.0
    # pred: [it, is, red] ref: [red] -> P=1/3 R=1 -> 0.5
    assert token_f1("It is red", "Red") == pytest.approx(0.5)
    assert token_f1("blue", "red") == 0.0
    assert token_f1("", "") == 1.0 and token_f1("", "x") == 0.0


def test_score_per_task() -> None:
    d = score(
        "describer", ["Acme 12 inches", "nothing"], ["Made by Acme, 12 inches.", "plain text."], [True, False]
    )
    assert d["rouge_l"] > 0 and d["stop_rate"] == 0.5 and d["facts_rows"] == 1
    assert d["facts_recall"] == 1.0 and "token_f1" not in d
    q = score("qa", ["30 hours"], ["30 hours"], [True])
    assert q["token_f1"] == 1.0 and "facts_recall" not in q


def test_eval_table_and_plot(tmp_path: Path) -> None:
    result = {
        "base": {"eval_loss": 2.5, "rouge_l": 0.1, "facts_recall": float("nan"), "stop_rate": 1.0},
        "finetuned": {"eval_loss": 1.9, "rouge_l": 0.3, "facts_recall": 0.5, "stop_rate": 1.0},
        "n_eval": 2,
        "samples": [
            {"uid": "u1", "input": "Product title: X|Y", "reference": "r", "base": "b", "finetuned": "f"}
        ],
    }
    table = eval_table(result, "describer")
    assert "(2 held-out rows)" in table
    assert "| eval_loss (lower is better) | 2.500 | 1.900 | -0.600 |" in table
    assert "| rouge_l | 0.100 | 0.300 | +0.200 |" in table
    assert "| facts_recall | n/a | 0.500 |  |" in table
    assert "X\\|Y" in table  # pipes escaped inside the table's markdown
    png = tmp_path / "loss.png"
    plot_loss([(1, 3.0), (2, 2.0)], result, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not math.isnan(result["base"]["eval_loss"])


class _Model:
    """Stands in for the PEFT model: knows whether its adapter is disabled."""

    def __init__(self) -> None:
        self.adapter_on = True

    @contextlib.contextmanager
    def disable_adapter(self):
        self.adapter_on = False
        try:
            yield
        finally:
            self.adapter_on = True


class _Backend:
    def for_inference(self, model):
        return model


class _Tokenizer:
    def convert_tokens_to_ids(self, tokens):
        return [2 for _ in tokens]


def test_the_base_column_is_evaluated_once_per_content_key(tmp_path: Path, monkeypatch) -> None:
    from components.finetune import evaluate
    from components.finetune.schema import Example, FinetuneConfig, Tokenized

    calls: list[str] = []

    def side(model, tokenizer, config, rows, eos_ids):
        which = "finetuned" if model.adapter_on else "base"
        calls.append(which)
        return {"eval_loss": 2.0 if which == "base" else 1.0, "rouge_l": 0.1}, [f"{which} {len(rows)}"] * len(
            rows
        )

    monkeypatch.setattr(evaluate, "_side", side)
    cfg = FinetuneConfig.model_validate(
        {"task": "describer", "base_model": "x", "max_steps": 1, "eval": {"cache_dir": str(tmp_path / "c")}}
    )
    rows = [(Example("u1", [{"role": "user", "content": "t"}, {"role": "assistant", "content": "d"}]),
             Tokenized([5, 6, 7], [-100, 6, 7], 1, False))]  # fmt: skip
    identity = {"base_files": {"model.safetensors": "ab"}}

    def run(identity=identity, rows=rows):
        return evaluate.evaluate_base_and_finetuned(
            _Model(), _Tokenizer(), cfg, rows, ["<e>"], "cpu", backend=_Backend(), base_identity=identity
        )

    first, second = run(), run()
    assert calls == ["base", "finetuned", "finetuned"]  # the second run reused the base column
    assert first["base_cached"] is False and second["base_cached"] is True
    assert second["base"] == first["base"] and second["samples"] == first["samples"]
    run(identity={"base_files": {"model.safetensors": "cd"}})  # another base: evaluated
    rows2 = [(rows[0][0], Tokenized([5, 6, 8], [-100, 6, 8], 1, False))]
    run(rows=rows2)  # other held-out tokens: evaluated
    run(identity=None)  # no file hashes: always evaluated, nothing cached
    assert calls.count("base") == 4
