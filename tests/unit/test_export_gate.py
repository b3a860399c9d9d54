"""Promotion gate decision: paired bootstrap, margins, minimum examples, report (no models)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from components.export.gate import GateConfig, SideScores, compare, decide, paired_bootstrap


def _side(label: str, metric: list[float], nll: list[float], task: str = "qa") -> SideScores:
    name = "token_f1" if task == "qa" else "rouge_l"
    return SideScores(label, ["x"] * len(nll), {name: list(metric)}, list(nll), [10] * len(nll))


def _cfg(**kw) -> GateConfig:
    return GateConfig(**{"min_examples": 50, "bootstrap_samples": 1000, **kw})


def test_bootstrap_is_seeded_and_brackets_the_mean() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.5, 0.1, 60), rng.normal(0.4, 0.1, 60)
    one = paired_bootstrap(a, b, samples=1000, confidence=0.95, seed=7)
    assert one == paired_bootstrap(a, b, samples=1000, confidence=0.95, seed=7)
    assert one["low"] < one["mean"] < one["high"]
    assert one["mean"] == pytest.approx(float(np.mean(a - b)))


def test_a_copy_of_the_champion_never_passes_even_with_margin_zero() -> None:
    same = _side("champion", [0.5] * 60, [1.2] * 60)
    result = decide("qa", _side("candidate", [0.5] * 60, [1.2] * 60), same, _cfg(margin=0.0))
    assert result["passed"] is False
    assert result["rows"]["token_f1"]["low"] == 0.0 and "does not clear" in result["reason"]


def test_better_on_metric_and_nll_passes_worse_fails() -> None:
    rng = np.random.default_rng(0)
    champ_f1, champ_nll = rng.uniform(0.3, 0.6, 60), rng.uniform(1.0, 1.5, 60)
    champion = _side("champion", champ_f1, champ_nll)
    better = _side("candidate", champ_f1 + rng.uniform(0.02, 0.1, 60), champ_nll - rng.uniform(0.05, 0.2, 60))
    worse = _side("candidate", champ_f1 - rng.uniform(0.02, 0.1, 60), champ_nll + rng.uniform(0.05, 0.2, 60))
    assert decide("qa", better, champion, _cfg())["passed"] is True
    result = decide("qa", worse, champion, _cfg())
    assert result["passed"] is False and result["rows"]["token_f1"]["high"] < 0


def test_the_margin_and_the_nll_both_gate() -> None:
    rng = np.random.default_rng(3)
    f1, nll = rng.uniform(0.3, 0.6, 60), rng.uniform(1.0, 1.5, 60)
    champion = _side("champion", f1, nll)
    small_gain = _side("candidate", f1 + 0.01, nll - 0.1)
    assert decide("qa", small_gain, champion, _cfg(margin=0.0))["passed"] is True
    assert decide("qa", small_gain, champion, _cfg(margin=0.05))["passed"] is False
    # Better answers but a worse reference NLL: not promoted.
    nll_worse = _side("candidate", f1 + 0.1, nll + 0.1)
    result = decide("qa", nll_worse, champion, _cfg())
    assert result["passed"] is False and result["reason"].startswith("ref_nll")


def test_too_few_examples_fail_whatever_the_scores() -> None:
    champion = _side("champion", [0.2] * 10, [2.0] * 10)
    result = decide("qa", _side("candidate", [0.9] * 10, [0.5] * 10), champion, _cfg(min_examples=50))
    assert result["passed"] is False and "only 10 held-out examples" in result["reason"]


def test_describer_gates_on_rouge_l_and_reports_facts_recall(tmp_path: Path) -> None:
    base = SideScores(
        "base", ["a"] * 4, {"rouge_l": [0.1] * 4, "facts_recall": [0.0, None, 0.5, 0.5]}, [2.0] * 4, [5] * 4
    )
    cand = SideScores(
        "candidate",
        ["b"] * 4,
        {"rouge_l": [0.3, 0.4, 0.35, 0.5], "facts_recall": [0.5, None, 1.0, 0.5]},
        [1.5, 1.4, 1.6, 1.3],
        [5] * 4,
    )
    result = compare("describer", cand, base, _cfg(min_examples=4), tmp_path)
    assert result["metric"] == "rouge_l" and result["against"] == "base"
    assert result["rows"]["facts_recall"]["n"] == 3  # the row without salient facts is left out
    assert "gating" not in result["rows"]["facts_recall"]
    assert result["passed"] is True
    table = (tmp_path / "gate-report.md").read_text()
    assert "| rouge_l |" in table and "PASSED" in table
    assert (tmp_path / "gate.png").stat().st_size > 1000
