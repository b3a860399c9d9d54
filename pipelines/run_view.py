"""What a local pipeline run shows in the terminal: one line per step, progress, logs to files.

`kfp.local` prints everything (its own logging records, every task subprocess's merged
stdout/stderr, pretty-printed artifact JSON) to `sys.stdout`. `capture_tasks()` wraps the one
function through which every task of a run passes (`kfp.local.orchestrator.task_executor.
execute_single_task`, kfp 2.17) and, while a task runs, routes `sys.stdout` to that task's own log
file (`<log_dir>/<step>.log`). The lines still flow through `StepView`, which turns them into a
start line, a progress bar (tqdm lines the steps print: "12/20 [...]"), and an end line with the
step's key counts, seconds and output path. The task subprocesses are untouched: on Kubernetes the
same components log to the pod's stdout as before.
"""

from __future__ import annotations

import contextlib
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

# Artifact metadata worth one glance at the end of a step, by kfp task name prefix.
KEY_COUNTS = {
    "prep": ("lines_read", "kept"),
    "sampling": ("rows", "train", "eval"),
    "synthesis": ("products", "asked", "with_pairs", "qa_examples"),
    "finetune": ("task", "train_rows", "steps", "base_eval_loss", "finetuned_eval_loss"),
    "export": ("task", "serve_level", "gate_passed", "registered_model", "version"),
}
TAIL_LINES = 30
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# kfp.local's own prefixes: "21:08:51.308 - INFO - " and "[KFP Executor 2026-12-01 21:08:38,547 INFO]: "
_KFP_PREFIX = re.compile(r"^(?:\d\d:\d\d:\d\d\.\d+ - [A-Z]+ - |\[KFP Executor [^\]]*\]:\s*)")
# tqdm's bar: "synthesis:  45%|####5     | 18/40 [00:31<00:38,  1.7s/product]"; also HF Trainer's.
_TQDM = re.compile(r"(?:(?P<desc>[\w.-]+):\s*)?\d+%\|.*?\|\s*(?P<n>[\d.]+[kMG]?)/(?P<total>[\d.]+[kMG]?)")


def clean(line: str) -> str:
    """A log line as a person reads it: no colour codes, no kfp indentation."""
    return _KFP_PREFIX.sub("", _ANSI.sub("", line).strip())


def parse_tqdm(line: str) -> tuple[float, float, str | None] | None:
    """(done, total, desc) from a tqdm progress line, else None."""
    m = _TQDM.search(line)
    if not m:
        return None
    try:
        done, total = _number(m["n"]), _number(m["total"])
    except ValueError:
        return None
    return (done, total, m["desc"]) if total > 0 else None


def _number(text: str) -> float:
    scale = {"k": 1e3, "M": 1e6, "G": 1e9}.get(text[-1], 1.0)
    return float(text.rstrip("kMG")) * scale


def key_counts(task: str, outputs: dict[str, Any]) -> dict[str, Any]:
    """Scalar metadata of a task's output artifacts that KEY_COUNTS names for its step."""
    wanted = next((keys for prefix, keys in KEY_COUNTS.items() if task.startswith(prefix)), ())
    found: dict[str, Any] = {}
    for artifact in outputs.values():
        meta = getattr(artifact, "metadata", None) or {}
        for key in wanted:
            if key in meta and not isinstance(meta[key], dict | list):
                value = meta[key]
                if isinstance(value, float):  # kfp stores metadata numbers as floats
                    value = int(value) if value.is_integer() else round(value, 3)
                found[key] = value
    return found


def output_paths(outputs: dict[str, Any]) -> list[str]:
    return [str(a.path) for a in outputs.values() if getattr(a, "path", None)]


@dataclass
class StepRecord:
    name: str
    log: Path
    started: float = field(default_factory=time.monotonic)
    seconds: float | None = None
    ok: bool | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    paths: list[str] = field(default_factory=list)
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))


class StepView:
    """Turns task events into terminal output; records every step for the final summary."""

    def __init__(self, console: Console, *, verbose: bool = False) -> None:
        self.console = console
        self.verbose = verbose
        self.steps: list[StepRecord] = []
        self._progress: Progress | None = None
        self._bar: Any = None

    def started(self, name: str, log: Path) -> StepRecord:
        step = StepRecord(name, log)
        self.steps.append(step)
        self.console.print(f"[bold cyan]▶ {name}[/] started  [dim](log: {escape(str(log))})[/]")
        if self.console.is_terminal and not self.verbose:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(bar_width=30),
                TextColumn("{task.fields[note]}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
                # kfp's output must keep flowing into the task log, not above the bar
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._progress.start()
            self._bar = self._progress.add_task(f"  {name}", total=None, note="")
        return step

    def line(self, step: StepRecord, raw: str) -> None:
        text = clean(raw)
        if not text or set(text) <= {"-"}:
            return
        step.tail.append(text)
        if self.verbose:
            self.console.print(f"[dim]{escape(step.name)} |[/] {escape(text)}", highlight=False)
        if self._progress is None:
            return
        bar = parse_tqdm(text)
        if bar:
            done, total, desc = bar
            self._progress.update(
                self._bar, completed=done, total=total, note=f"{desc or ''} {done:g}/{total:g}"
            )
        else:
            width = max(20, self.console.width - 60)
            self._progress.update(self._bar, note=escape(text[:width]))

    def finished(self, step: StepRecord, ok: bool, outputs: dict[str, Any]) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        step.seconds = time.monotonic() - step.started
        step.ok = ok
        step.counts = key_counts(step.name, outputs)
        step.paths = output_paths(outputs)
        if ok:
            counts = "  ".join(f"{k}={v}" for k, v in step.counts.items())
            where = f"  -> {step.paths[0]}" if step.paths else ""
            self.console.print(
                f"[bold green]✓ {step.name}[/] {step.seconds:.1f} s  {escape(counts)}[dim]{escape(where)}[/]"
            )
            return
        self.console.print(f"[bold red]✗ {step.name} failed[/] after {step.seconds:.1f} s; last lines:")
        for text in list(step.tail)[-15:]:
            self.console.print(f"    {escape(text)}", highlight=False)
        self.console.print(f"  full log: {escape(str(step.log))}")


class _Router:
    """A `sys.stdout` stand-in that writes each thread's output to the file of the task it runs."""

    def __init__(self, default: TextIO) -> None:
        self._default = default
        self._local = threading.local()

    def bind(self, fh: TextIO | None, on_line: Any = None) -> None:
        self._local.fh, self._local.on_line, self._local.buf = fh, on_line, ""

    def write(self, text: str) -> int:
        fh = getattr(self._local, "fh", None) or self._default
        fh.write(text)
        on_line = getattr(self._local, "on_line", None)
        if on_line is not None:
            buf = self._local.buf + text
            *lines, self._local.buf = buf.split("\n")
            for line in lines:
                on_line(line)
        return len(text)

    def flush(self) -> None:
        (getattr(self._local, "fh", None) or self._default).flush()

    def isatty(self) -> bool:
        return False


def task_display_name(task_name: str, task_spec: Any) -> str:
    """The pipeline's display name for a task (`finetune-qa`), else kfp's task name (`finetune-2`)."""
    info = getattr(task_spec, "task_info", None)
    return getattr(info, "name", "") or task_name


@contextlib.contextmanager
def capture_tasks(log_dir: Path, view: StepView) -> Iterator[Path]:
    """For the length of the block: kfp.local's output goes to files under `log_dir` (one per step,
    plus `pipeline.log` for what runs between steps), and `view` reports each step. Yields the
    pipeline log's path."""
    from kfp.local.orchestrator import task_executor

    log_dir.mkdir(parents=True, exist_ok=True)
    pipeline_log = log_dir / "pipeline.log"
    original = task_executor.execute_single_task

    with open(pipeline_log, "a", encoding="utf-8", errors="replace") as main_fh:
        router = _Router(main_fh)

        def execute_single_task(task_name: str, task_spec: Any, *args: Any, **kwargs: Any) -> Any:
            name = task_display_name(task_name, task_spec)
            log = log_dir / f"{name}.log"
            with open(log, "w", encoding="utf-8", errors="replace", buffering=1) as fh:
                step = view.started(name, log)
                router.bind(fh, lambda line: view.line(step, line))
                outputs, status = {}, None
                try:
                    outputs, status = original(task_name, task_spec, *args, **kwargs)
                finally:
                    router.bind(None)
                    view.finished(step, getattr(status, "name", "") == "SUCCESS", outputs or {})
            return outputs, status

        task_executor.execute_single_task = execute_single_task
        try:
            with contextlib.redirect_stdout(router):  # type: ignore[type-var]
                yield pipeline_log
        finally:
            task_executor.execute_single_task = original
            sys.stdout.flush()
