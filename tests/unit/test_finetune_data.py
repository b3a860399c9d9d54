"""Fine-tune data: chat JSONL validation, splits, completion-only tokenization with the real tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.common.chat_format import describer_messages, qa_messages
from components.common.errors import InputError
from components.finetune.core import (
    CHATML_TEMPLATE,
    DataReport,
    Example,
    FinetuneConfig,
    Tokenized,
    dataset_files,
    end_tokens,
    last_checkpoint,
    read_examples,
    resolve_chat_template,
    split_examples,
    tokenize_example,
    tokenize_examples,
)
from components.finetune.materialize import DEFAULT_OUTPUT

SMOL = DEFAULT_OUTPUT
needs_smol = pytest.mark.skipif(
    not (SMOL / "tokenizer.json").is_file(), reason="run `python -m components.finetune.materialize` first"
)


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return path


def test_bad_lines_are_quarantined_with_reasons(tmp_path: Path) -> None:
    good = {"messages": describer_messages("Lamp", "A lamp."), "uid": "1", "split": "train"}
    rows = [
        good,
        "{not json",
        {"messages": describer_messages("Lamp")},  # no assistant turn
        {"messages": describer_messages("Lamp", "   ")},
        {"uid": "x"},
        {"messages": [{"role": "user"}, {"role": "assistant", "content": "hi"}]},
        [1, 2],
        "",
    ]
    quarantine: list[dict] = []
    examples = read_examples(_jsonl(tmp_path / "t.jsonl", rows), quarantine)
    assert [e.uid for e in examples] == ["1"]
    reasons = [q["reason"] for q in quarantine]
    assert reasons == [
        "bad_json",
        "last_not_assistant",
        "empty_completion",
        "no_messages",
        "bad_message",
        "not_an_object",
    ]
    assert [q["line"] for q in quarantine] == [2, 3, 4, 5, 6, 7]
    assert len(examples) + len(quarantine) == 7  # the blank line is not a record


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_examples(tmp_path / "nope.jsonl", [])
    with pytest.raises(InputError, match=r"qa-train\.jsonl"):
        dataset_files(tmp_path, "qa")


def test_dataset_files_finds_task_files(tmp_path: Path) -> None:
    _jsonl(tmp_path / "describer-train.jsonl", [])
    assert dataset_files(tmp_path, "describer") == (tmp_path / "describer-train.jsonl", None)
    _jsonl(tmp_path / "describer-eval.jsonl", [])
    assert dataset_files(tmp_path, "describer")[1] == tmp_path / "describer-eval.jsonl"


def _ex(uid: str, split: str | None = None) -> Example:
    return Example(uid=uid, messages=describer_messages(uid, "d"), split=split)


def test_split_prefers_eval_file_then_split_field_then_hash() -> None:
    cfg = FinetuneConfig(task="describer", base_model="/m", max_steps=1, eval={"holdout_fraction": 0.3})
    train = [_ex(f"u{i}") for i in range(200)]
    assert split_examples(train, [_ex("e")], cfg) == (train, [_ex("e")])
    marked = [_ex("a", "train"), _ex("b", "eval")]
    assert split_examples(marked, None, cfg) == ([marked[0]], [marked[1]])
    tr, ev = split_examples(train, None, cfg)
    assert len(tr) + len(ev) == 200 and 30 < len(ev) < 90
    assert split_examples(train, None, cfg) == (tr, ev)  # deterministic
    assert not {e.uid for e in tr} & {e.uid for e in ev}
    assert split_examples(train, [], cfg) == (tr, ev)  # an empty eval file falls back to the holdout


def test_chat_template_resolution(tmp_path: Path) -> None:
    class Tok:
        chat_template = None

    with pytest.raises(InputError, match="no chat template") as err:
        resolve_chat_template("auto", Tok())
    assert err.value.field == "chat_template"
    assert resolve_chat_template("chatml", Tok()) == CHATML_TEMPLATE
    (tmp_path / "t.jinja").write_text("{{ messages }}", encoding="utf-8")
    assert resolve_chat_template(str(tmp_path / "t.jinja"), Tok()) == "{{ messages }}"
    assert resolve_chat_template("{% for m in messages %}{% endfor %}", Tok()).startswith("{%")
    with pytest.raises(InputError, match="unknown chat template"):
        resolve_chat_template("alpaca", Tok())


def test_last_checkpoint_skips_incomplete(tmp_path: Path) -> None:
    assert last_checkpoint(tmp_path / "none") is None
    for n, complete in ((2, True), (10, True), (12, False)):
        d = tmp_path / f"checkpoint-{n}"
        d.mkdir()
        if complete:
            (d / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-x").mkdir()
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-10"


# ------------------------------------------------------------------- real tokenizer (SmolLM2, local)
@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(SMOL), local_files_only=True)


@needs_smol
def test_end_tokens_of_smollm2(tokenizer) -> None:
    eos = end_tokens(tokenizer, 2)
    assert eos[0] == "<|im_end|>"
    assert "<|endoftext|>" in eos
    assert "<|eot_id|>" not in eos  # not in this vocabulary


@needs_smol
@pytest.mark.parametrize("task", ["describer", "qa"])
def test_prompt_tokens_are_masked(tokenizer, task: str) -> None:
    if task == "describer":
        messages = describer_messages("Sony WH-1000XM4 Headphones", "Noise cancelling, 30 hour battery.")
    else:
        messages = qa_messages(
            "How long is the battery?", [("Sony WH-1000XM4", "30 hour battery.")], "30 hours."
        )
    tok = tokenize_example(tokenizer, messages, tokenizer.chat_template, 512, "<|im_end|>")
    assert isinstance(tok, Tokenized) and not tok.truncated
    assert len(tok.input_ids) == len(tok.labels)
    assert tok.labels[: tok.prompt_len] == [-100] * tok.prompt_len
    assert all(label != -100 for label in tok.labels[tok.prompt_len :])
    prompt = tokenizer.decode(tok.input_ids[: tok.prompt_len])
    completion = tokenizer.decode(tok.labels[tok.prompt_len :])
    assert prompt.endswith("<|im_start|>assistant\n") and messages[-2]["content"] in prompt
    assert completion == messages[-1]["content"] + "<|im_end|>\n"
    # the prompt ids are exactly what inference feeds the model
    gen_prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    assert tok.input_ids[: tok.prompt_len] == tokenizer(gen_prompt, add_special_tokens=False)["input_ids"]


@needs_smol
def test_collator_keeps_the_mask_and_pads_labels(tokenizer) -> None:
    from components.finetune.training import collator

    a = tokenize_example(tokenizer, describer_messages("A", "short."), CHATML_TEMPLATE, 256, "<|im_end|>")
    b = tokenize_example(
        tokenizer, describer_messages("B", "a longer answer " * 5), CHATML_TEMPLATE, 256, "<|im_end|>"
    )
    assert isinstance(a, Tokenized) and isinstance(b, Tokenized)
    rows = [
        {"input_ids": t.input_ids, "attention_mask": [1] * len(t.input_ids), "labels": t.labels}
        for t in (a, b)
    ]
    batch = collator(tokenizer)(rows)
    labels = batch["labels"].tolist()
    assert labels[0][: a.prompt_len] == [-100] * a.prompt_len
    assert labels[0][len(a.input_ids) :] == [-100] * (len(b.input_ids) - len(a.input_ids))  # padding
    assert labels[1] == b.labels


@needs_smol
def test_long_rows_are_truncated_or_dropped_and_counted(tokenizer) -> None:
    long_answer = describer_messages("Lamp", "bright " * 400)
    tok = tokenize_example(tokenizer, long_answer, CHATML_TEMPLATE, 64, "<|im_end|>")
    assert isinstance(tok, Tokenized) and tok.truncated and len(tok.input_ids) == 64
    long_prompt = describer_messages("Lamp " * 200, "ok")
    assert tokenize_example(tokenizer, long_prompt, CHATML_TEMPLATE, 64, "<|im_end|>") == "prompt_too_long"

    report, quarantine = DataReport(), []
    kept = tokenize_examples(
        tokenizer,
        [Example("a", long_answer), Example("b", long_prompt), Example("c", describer_messages("x", "y"))],
        CHATML_TEMPLATE,
        64,
        "<|im_end|>",
        report,
        quarantine,
        "train",
    )
    assert [e.uid for e, _ in kept] == ["a", "c"]
    assert report.truncated == 1 and report.quarantined == {"prompt_too_long": 1}
    assert quarantine == [{"file": "train", "uid": "b", "reason": "prompt_too_long"}]


@needs_smol
def test_template_that_rewrites_the_prompt_is_refused(tokenizer) -> None:
    # A template that renders differently once the answer is there cannot give a clean completion mask.
    odd = "{% for m in messages %}{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<A>{% endif %}"
    with pytest.raises(InputError, match="prefix"):
        tokenize_example(tokenizer, describer_messages("t", "d"), odd, 128, "<|im_end|>")


class DirStore:
    """A directory standing in for an S3 bucket: same two calls S3Checkpoints uses."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uploaded: list[str] = []

    def upload_file(self, path: Path, key: str) -> None:
        dest = self.root / key.removeprefix("s3://b/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(Path(path).read_bytes())
        self.uploaded.append(key)

    def fetch_to_local(self, uri: str, dest_dir: Path) -> Path:
        import shutil

        from components.common.storage import StorageError

        src = self.root / uri.removeprefix("s3://b/").rstrip("/")
        if not src.is_dir():
            raise StorageError(f"nothing at {uri}")
        out = Path(dest_dir) / src.name
        shutil.copytree(src, out)
        return out


def test_s3_checkpoint_mirror_round_trip(tmp_path: Path) -> None:
    from components.finetune.core import S3Checkpoints

    store = DirStore(tmp_path / "bucket")
    mirror = S3Checkpoints("s3://b/ckpt/run1/describer", store=store)
    assert mirror.pull(tmp_path / "fresh" / "checkpoints") is None  # nothing saved yet

    ckpt = tmp_path / "a" / "checkpoints" / "checkpoint-4"
    ckpt.mkdir(parents=True)
    (ckpt / "adapter_model.safetensors").write_bytes(b"w")
    (ckpt / "trainer_state.json").write_text("{}")
    (ckpt / "optimizer.pt").write_bytes(b"o")
    mirror.push(ckpt)
    assert store.uploaded[-1].endswith("checkpoint-4/trainer_state.json")  # last: marks it complete
    # an upload cut off before trainer_state.json is not a checkpoint
    half = tmp_path / "bucket" / "ckpt/run1/describer/checkpoint-6"
    half.mkdir()
    (half / "optimizer.pt").write_bytes(b"o")

    restored = mirror.pull(tmp_path / "b" / "checkpoints")
    assert restored == tmp_path / "b" / "checkpoints" / "checkpoint-4"
    assert (restored / "adapter_model.safetensors").read_bytes() == b"w"
    assert not (tmp_path / "b" / "checkpoints" / "checkpoint-6").exists()
