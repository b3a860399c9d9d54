"""How a local run looks: per-step log files, one line per step, progress parsed from tqdm lines.

The capture is tested against the real `kfp.local` (a two-task pipeline of tiny lightweight
components run by SubprocessRunner), because it hooks a kfp function: a kfp upgrade that moves it
must fail here, not silently bring the JSON wall back.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from rich.console import Console

from pipelines.run_view import StepView, _Router, capture_tasks, clean, key_counts, parse_tqdm
from tests.fakes.view_pipeline import view_pipeline


def test_parse_tqdm_reads_done_and_total_from_bar_lines() -> None:
    assert parse_tqdm("synthesis:  45%|####5     | 18/40 [00:31<00:38,  1.7s/product]") == (
        18,
        40,
        "synthesis",
    )
    assert parse_tqdm(" 50%|█████     | 10/20 [00:30<00:30,  3.0s/it]") == (10, 20, None)
    done, total, desc = parse_tqdm("prep:  12%|#2        | 1.20M/9.80M [00:01<00:09, 1.1MB/s]")
    assert (round(done), round(total), desc) == (1_200_000, 9_800_000, "prep")
    assert parse_tqdm("{'loss': 2.31, 'grad_norm': 1.2}") is None
    assert parse_tqdm("read 10/20 rows") is None  # a fraction without a bar is not progress


def test_clean_drops_colour_codes_and_indentation() -> None:
    assert clean("    \x1b[96m'prep'\x1b[0m finished  ") == "'prep' finished"
    assert clean("21:08:51.308 - INFO - Executing task 'make'") == "Executing task 'make'"
    assert clean("    [KFP Executor 2026-12-01 21:08:38,547 INFO]: Loading component") == "Loading component"


class _Artifact:
    def __init__(self, path: str, metadata: dict) -> None:
        self.path, self.metadata = path, metadata


def test_key_counts_picks_the_step_scalars_only() -> None:
    outputs = {"processed": _Artifact("/x", {"lines_read": 10, "kept": 7, "dropped": {"short_content": 3}})}
    assert key_counts("prep", outputs) == {"lines_read": 10, "kept": 7}
    outputs = {"model": _Artifact("/m", {"task": "qa", "base_eval_loss": 1.23456, "steps": 20.0, "other": 1})}
    assert key_counts("finetune-qa", outputs) == {"task": "qa", "steps": 20, "base_eval_loss": 1.235}


def test_router_sends_each_thread_to_its_own_file() -> None:
    default, a, b = io.StringIO(), io.StringIO(), io.StringIO()
    router = _Router(default)
    seen: list[str] = []

    def work(fh: io.StringIO, text: str) -> None:
        router.bind(fh, seen.append)
        router.write(text + "\npartial")
        router.write(" end\n")
        router.bind(None)

    threads = [threading.Thread(target=work, args=(fh, t)) for fh, t in ((a, "A"), (b, "B"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    router.write("between steps\n")
    assert a.getvalue() == "A\npartial end\n" and b.getvalue() == "B\npartial end\n"
    assert default.getvalue() == "between steps\n"
    assert sorted(seen) == ["A", "B", "partial end", "partial end"]


@pytest.mark.parametrize("fail", [False, True])
def test_capture_tasks_with_real_kfp_local(tmp_path: Path, fail: bool, capsys) -> None:
    import warnings

    from kfp import local

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    out = io.StringIO()
    view = StepView(Console(file=out, width=200, force_terminal=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with capture_tasks(tmp_path / "logs", view):
            if fail:
                with pytest.raises(RuntimeError, match="finished with status"):
                    view_pipeline(fail)()
            else:
                view_pipeline(fail)()
    text = out.getvalue()
    assert "▶ sampling started" in text and "✓ sampling" in text and "rows=3" in text
    assert (tmp_path / "logs" / "sampling.log").read_text().count("making 3 rows") == 1
    assert [s.name for s in view.steps] == ["sampling", "consumer"]
    # nothing of kfp's own output reaches this process's stdout: it is in the logs
    assert "Executing task" not in capsys.readouterr().out
    assert "Executing task" in (tmp_path / "logs" / "sampling.log").read_text()
    if fail:
        assert view.steps[-1].ok is False
        assert "✗ consumer failed" in text and "deliberate failure for the test" in text
        assert str(tmp_path / "logs" / "consumer.log") in text
    else:
        assert all(s.ok for s in view.steps)
