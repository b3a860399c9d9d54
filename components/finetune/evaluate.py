"""Held-out evaluation of the base model vs the fine-tuned one, with the same prompts and decoding.

Both sides run on one PEFT model: the base is the same model inside `disable_adapter()`, so the only
difference between the two columns is the trained adapter. Greedy decoding, `eval.max_new_tokens`.

Metrics (all in [0, 1] except the loss; higher is better except the loss):
- `eval_loss`: mean negative log-likelihood per reference-answer token (prompt tokens excluded).
- `rouge_l`: ROUGE-L F1 on lowercased word tokens (longest common subsequence; implemented here).
- `facts_recall` (describer): share of the reference's salient tokens found in the output. Salient =
  tokens with a digit (`12`, `3-layer`, `100ml`), unit words right after a number (`12 inches`), and
  capitalised or mixed-case words that do not start a sentence (brands, models: `Sony`, `iPhone`, `USB`).
  Rows whose reference has no salient token are left out of the mean (`facts_rows` counts the rest).
- `token_f1` (QA): SQuAD-style bag-of-words F1 vs the reference answer (lowercase, no punctuation/articles).
- `stop_rate`: share of outputs that ended with an end token before `max_new_tokens` (a template
  mismatch shows up here as endless output); `mean_words`: mean output length in words.

The base column is the same run after run while the base and the held-out rows are (a rerun of the
pipeline, a new recipe): it is kept by content key in `eval.cache_dir` (`base_side_key`: the base's
file hashes, how it was loaded and on what hardware, the library versions, the rows' tokens and
references, the decoding settings, EVAL_VERSION) and reused; `base_cached` in the result says so.
Without file hashes for the base (a local directory outside a tracked run) it is always evaluated.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from components.common.cache import JsonCache, content_key
from components.common.text_metrics import (  # noqa: F401  (re-exported: tests and callers use them here)
    UNITS,
    facts_recall,
    lcs_length,
    rouge_l,
    salient_facts,
    token_f1,
    words,
)
from components.finetune.schema import Example, FinetuneConfig, Task, Tokenized

# bump when generate, score or completion_loss change their numbers: it keys cached base results
EVAL_VERSION = "1"


def score(task: Task, outputs: list[str], references: list[str], stopped: list[bool]) -> dict[str, float]:
    n = len(outputs)
    result: dict[str, float] = {
        "rouge_l": sum(rouge_l(o, r) for o, r in zip(outputs, references, strict=True)) / n,
        "stop_rate": sum(stopped) / n,
        "mean_words": sum(len(words(o)) for o in outputs) / n,
    }
    if task == "describer":
        recalls = [
            f for o, r in zip(outputs, references, strict=True) if (f := facts_recall(o, r)) is not None
        ]
        result["facts_recall"] = sum(recalls) / len(recalls) if recalls else float("nan")
        result["facts_rows"] = len(recalls)
    else:
        result["token_f1"] = sum(token_f1(o, r) for o, r in zip(outputs, references, strict=True)) / n
    return result


# ---------------------------------------------------------------------------------------- model side
def _device_of(model: Any) -> Any:
    return next(model.parameters()).device


def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[list[int]],
    max_new_tokens: int,
    eos_ids: list[int],
    batch_size: int,
) -> tuple[list[str], list[bool]]:
    """Greedy outputs for token-id prompts (left-padded batches), and whether each hit an end token."""
    import torch
    from tqdm import tqdm

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    device = _device_of(model)
    outputs: list[str] = []
    stopped: list[bool] = []
    for i in tqdm(range(0, len(prompts), batch_size), desc="generate", leave=False):
        batch = prompts[i : i + batch_size]
        width = max(len(p) for p in batch)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=device)
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                use_cache=True,  # the Trainer turns the config's use_cache off for training
                eos_token_id=eos_ids,
                pad_token_id=pad,
            )
        for row in out[:, width:].tolist():
            cut = next((k for k, t in enumerate(row) if t in eos_ids), None)
            stopped.append(cut is not None)
            outputs.append(tokenizer.decode(row[:cut], skip_special_tokens=True).strip())
    return outputs, stopped


def completion_loss(model: Any, rows: list[Tokenized], pad_id: int, batch_size: int = 2) -> float:
    """Mean NLL per completion token (token-weighted across rows), prompt tokens excluded."""
    import torch

    device = _device_of(model)
    total, count = 0.0, 0
    for i in range(0, len(rows), batch_size):
        batch = rows[i : i + batch_size]
        width = max(len(t.input_ids) for t in batch)
        ids = torch.tensor(
            [t.input_ids + [pad_id] * (width - len(t.input_ids)) for t in batch], device=device
        )
        mask = torch.tensor(
            [[1] * len(t.input_ids) + [0] * (width - len(t.input_ids)) for t in batch], device=device
        )
        labels = torch.tensor([t.labels + [-100] * (width - len(t.labels)) for t in batch], device=device)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        target = labels[:, 1:]
        nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=-100, reduction="sum"
        )
        total += float(nll)
        count += int((target != -100).sum())
    return total / count if count else float("nan")


def _side(
    model: Any,
    tokenizer: Any,
    config: FinetuneConfig,
    rows: list[tuple[Example, Tokenized]],
    eos_ids: list[int],
) -> tuple[dict[str, float], list[str]]:
    prompts = [t.input_ids[: t.prompt_len] for _, t in rows]
    refs = [ex.messages[-1]["content"] for ex, _ in rows]
    outputs, stopped = generate(
        model, tokenizer, prompts, config.eval.max_new_tokens, eos_ids, config.eval.batch_size
    )
    metrics = score(config.task, outputs, refs, stopped)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    metrics["eval_loss"] = completion_loss(model, [t for _, t in rows], pad)
    return metrics, outputs


def base_side_key(
    identity: dict[str, Any],
    config: FinetuneConfig,
    rows: list[tuple[Example, Tokenized]],
    eos_ids: list[int],
) -> str:
    """Content key of the base column (module docstring)."""
    return content_key(
        {
            "eval": EVAL_VERSION,
            "identity": identity,
            "task": config.task,
            "decoding": {"max_new_tokens": config.eval.max_new_tokens, "batch_size": config.eval.batch_size},
            "rows": [[t.input_ids, t.labels, t.prompt_len, ex.messages[-1]["content"]] for ex, t in rows],
            "eos": eos_ids,
        }
    )


def evaluate_base_and_finetuned(
    model: Any,
    tokenizer: Any,
    config: FinetuneConfig,
    eval_rows: list[tuple[Example, Tokenized]],
    eos_tokens: list[str],
    device: str,
    *,
    backend: Any,
    base_identity: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """eval.json content: {"base": {...}, "finetuned": {...}, "n_eval": N, "samples": [...], "base_cached": bool}."""
    rows = eval_rows[: config.eval.max_examples]
    if not rows:
        return {"base": {}, "finetuned": {}, "n_eval": 0, "samples": []}
    model = backend.for_inference(model)
    eos_ids = list(dict.fromkeys(tokenizer.convert_tokens_to_ids(eos_tokens)))
    cache = JsonCache(config.eval.cache_dir) if config.eval.cache_dir and base_identity else None
    key = base_side_key(base_identity or {}, config, rows, eos_ids) if cache else ""
    hit = cache.get(key) if cache else None
    if hit:
        base, base_out = hit["metrics"], hit["outputs"]
    else:
        with model.disable_adapter():
            base, base_out = _side(model, tokenizer, config, rows, eos_ids)
        if cache:
            cache.put(key, {"metrics": base, "outputs": base_out})
    tuned, tuned_out = _side(model, tokenizer, config, rows, eos_ids)
    samples = [
        {
            "uid": ex.uid,
            "input": ex.messages[-2]["content"][-300:],
            "reference": ex.messages[-1]["content"][:500],
            "base": b[:500],
            "finetuned": f[:500],
        }
        for (ex, _), b, f in list(zip(rows, base_out, tuned_out, strict=True))[:3]
    ]
    return {
        "base": base,
        "finetuned": tuned,
        "n_eval": len(rows),
        "samples": samples,
        "base_cached": bool(hit),
    }


# ---------------------------------------------------------------------------------------- reporting
METRIC_ORDER = ("eval_loss", "rouge_l", "facts_recall", "token_f1", "stop_rate", "mean_words", "facts_rows")
LOWER_IS_BETTER = {"eval_loss"}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def eval_table(result: dict[str, Any], task: Task) -> str:
    """Markdown table base vs fine-tuned, plus a few sample outputs."""
    base, tuned = result.get("base", {}), result.get("finetuned", {})
    lines = [
        f"### Fine-tune evaluation: {task} ({result.get('n_eval', 0)} held-out rows)",
        "",
        "| metric | base | fine-tuned | change |",
        "|---|---:|---:|---:|",
    ]
    for k in [m for m in METRIC_ORDER if m in base] + sorted(set(base) - set(METRIC_ORDER)):
        b, f = base.get(k), tuned.get(k)
        numeric = isinstance(b, float) and isinstance(f, float)
        delta = f - b if numeric and k != "facts_rows" else None
        arrow = "" if k not in LOWER_IS_BETTER else " (lower is better)"
        change = "" if delta is None or math.isnan(delta) else f"{delta:+.3f}"
        lines.append(f"| {k}{arrow} | {_fmt(b)} | {_fmt(f)} | {change} |")
    for s in result.get("samples", []):
        lines += [
            "",
            f"**{s['uid']}**: `{_one_line(s['input'])[:160]}`",
            f"- reference: {_one_line(s['reference'])[:300]}",
            f"- base: {_one_line(s['base'])[:300]}",
            f"- fine-tuned: {_one_line(s['finetuned'])[:300]}",
        ]
    return "\n".join(lines) + "\n"


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def plot_loss(losses: list[tuple[int, float]], result: dict[str, Any], path: str | Path) -> None:
    """Training loss per step, with the held-out loss of base and fine-tuned as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if losses:
        ax.plot([s for s, _ in losses], [v for _, v in losses], label="train loss", color="tab:blue")
    for side, color in (("base", "tab:gray"), ("finetuned", "tab:green")):
        v = result.get(side, {}).get("eval_loss")
        if isinstance(v, float) and not math.isnan(v):
            ax.axhline(v, linestyle="--", color=color, label=f"held-out loss, {side}: {v:.3f}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (completion tokens)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(str(path))
    plt.close(fig)
