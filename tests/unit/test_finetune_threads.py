"""CPU training threads: the cores other runnable tasks leave free, read now (not the 1-minute load)."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.finetune import core
from components.finetune.schema import FinetuneConfig


def stat_file(tmp_path: Path, running: int) -> Path:
    p = tmp_path / "stat"
    p.write_text(f"cpu  1 2 3 4\nctxt 99\nprocs_running {running}\nprocs_blocked 0\n", encoding="utf-8")
    return p


def test_runnable_others_excludes_the_reader(tmp_path):
    assert core.runnable_others(stat_file(tmp_path, 1), reads=3, every_s=0) == 0
    assert core.runnable_others(stat_file(tmp_path, 4), reads=3, every_s=0) == 3


def test_runnable_others_without_proc(tmp_path):
    assert core.runnable_others(tmp_path / "missing", every_s=0) is None
    (tmp_path / "odd").write_text("cpu 1 2\n", encoding="utf-8")
    assert core.runnable_others(tmp_path / "odd", every_s=0) is None


@pytest.mark.parametrize(("others", "cores", "expected"), [(0, 2, 2), (1, 2, 1), (5, 2, 1), (1, 16, 15)])
def test_threads_are_the_free_cores(monkeypatch, others, cores, expected):
    monkeypatch.setattr(core, "runnable_others", lambda: others)
    monkeypatch.setattr(core.os, "cpu_count", lambda: cores)
    # a high 1-minute load (the teacher just finished) must not matter when the run queue is empty
    monkeypatch.setattr(core.os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    import torch

    before = torch.get_num_threads()
    try:
        assert core.set_cpu_threads(FinetuneConfig(task="qa", base_model="/m", max_steps=3)) == expected
        assert torch.get_num_threads() == expected
    finally:
        torch.set_num_threads(before)


def test_recipe_threads_win(monkeypatch):
    monkeypatch.setattr(core, "runnable_others", lambda: 7)
    import torch

    before = torch.get_num_threads()
    try:
        assert (
            core.set_cpu_threads(FinetuneConfig(task="qa", base_model="/m", max_steps=3, cpu_threads=2)) == 2
        )
    finally:
        torch.set_num_threads(before)
