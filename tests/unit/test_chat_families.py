"""Chat families on the real Qwen2.5 / Llama 3.2 tokenizers and templates (offline fixtures).

One owner per fact: detection, end tokens, the pinned date and the Go TEMPLATE come from
components.common.chat_families; fine-tune, export and serving are checked to read the same facts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

pytest.importorskip("quicktok", reason="quicktok-v1 (dev dependency) not installed")

from components.common import chat_families, chat_format
from components.common.chat_families import FIXED_DATE, render_jinja
from components.common.errors import InputError
from components.export import fidelity
from components.export.modelfile import TASK_SYSTEM, build_modelfile, parse_modelfile
from components.finetune.core import (
    FinetuneConfig,
    Tokenized,
    chat_setup,
    fit_completion,
    tokenize_example,
)
from tests.fixtures import family_models as fm

FAMILY_OF = {"qwen2.5": "chatml", "llama3.2": "llama3"}
TURN_END = {"qwen2.5": "<|im_end|>", "llama3.2": "<|eot_id|>"}
STOPS = {
    "qwen2.5": ["<|im_end|>", "<|endoftext|>"],
    "llama3.2": ["<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"],
}
TITLE = "Girls Ballet Tutu Neon Pink"
DESCRIPTION = "High quality 3 layer ballet tutu. 12 inches in length, elastic waist."


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("family-tokenizers")
    return {f: AutoTokenizer.from_pretrained(str(fm.build_tokenizer(f, root / f))) for f in fm.FAMILIES}


def _config(task: str = "describer", **over: Any) -> FinetuneConfig:
    return FinetuneConfig(task=task, base_model="/unused", max_steps=1, **over)


def _messages(task: str, answer: str | None = DESCRIPTION) -> list[dict[str, str]]:
    if task == "describer":
        return chat_format.describer_messages(TITLE, answer)
    return chat_format.qa_messages("How long is it?", [(TITLE, DESCRIPTION)], answer and "12 inches.")


# --- detection, stops, date ----------------------------------------------------------------------


@pytest.mark.parametrize("family", list(fm.FAMILIES))
def test_family_detected_from_the_published_template(tokenizers: dict, family: str) -> None:
    tok = tokenizers[family]
    assert chat_families.detect(tok.chat_template).name == FAMILY_OF[family]
    setup = chat_setup(_config(), tok)
    assert setup.family == FAMILY_OF[family]
    assert setup.eos_tokens == STOPS[family]  # every end token, the tokenizer's eos first
    assert setup.turn_end == TURN_END[family]


def test_unknown_family_fails_naming_the_template() -> None:
    alpaca = "{% for m in messages %}### {{ m['role'] }}:\n{{ m['content'] }}\n{% endfor %}### Response:\n"
    with pytest.raises(InputError, match=r'unknown chat template family for template "\{% for m in'):
        chat_families.detect(alpaca)
    with pytest.raises(InputError, match="unknown chat template family"):
        build_modelfile("m.gguf", alpaca, eos_tokens=["</s>"], vocab=["</s>"], parameters={})


def test_unpinned_llama_template_renders_today(tokenizers: dict) -> None:
    """The trap: transformers-style rendering puts today's date into the Llama 3.2 prompt."""
    raw = tokenizers["llama3.2"].chat_template
    today = datetime.now().strftime("%d %b %Y")
    assert f"Today Date: {today}" in render_jinja(raw, _messages("qa", None))
    with pytest.raises(InputError, match="today's date"):
        chat_families.LLAMA3.go_template(raw)  # the Modelfile cannot follow a moving date


@pytest.mark.parametrize("family", list(fm.FAMILIES))
@pytest.mark.parametrize("task", ["describer", "qa"])
def test_no_rendered_prompt_depends_on_today(tokenizers: dict, family: str, task: str, monkeypatch) -> None:
    tok = tokenizers[family]
    setup = chat_setup(_config(task, date_string="03 Mar 2025"), tok)
    if family == "llama3.2":
        assert setup.date_string == "03 Mar 2025"
    else:
        assert setup.date_string is None and setup.template == tok.chat_template
    renders = []
    for fake_today in ("01 Jan 2030", "31 Dec 1999"):
        env_now = lambda fmt, d=fake_today: d  # noqa: E731
        monkeypatch.setattr(chat_families, "datetime", _FakeDatetime(env_now))
        text = render_jinja(setup.template, _messages(task, None), bos_token=tok.bos_token or "")
        assert fake_today not in text
        renders.append(text)
    assert renders[0] == renders[1]
    # transformers' own renderer (it defines strftime_now) gives the same prompt, too
    hf = tok.apply_chat_template(_messages(task, None), chat_template=setup.template, tokenize=False,
                                 add_generation_prompt=True)  # fmt: skip
    assert hf == renders[0]
    if family == "llama3.2":
        assert "Today Date: 03 Mar 2025\n\n" in hf


class _FakeDatetime:
    def __init__(self, strftime):
        self._strftime = strftime

    def now(self):
        outer = self

        class _Now:
            def strftime(self, fmt: str) -> str:
                return outer._strftime(fmt)

        return _Now()


def test_default_date_is_the_templates_own_fallback(tokenizers: dict) -> None:
    raw = tokenizers["llama3.2"].chat_template
    assert f'"{FIXED_DATE}"' in raw  # what a renderer without strftime_now prints
    pinned = chat_families.LLAMA3.pin(raw)
    assert chat_families.LLAMA3.pin(pinned) == pinned  # idempotent
    assert chat_families.LLAMA3.date_of(pinned) == FIXED_DATE


# --- Modelfile: TEMPLATE, SYSTEM, stops ----------------------------------------------------------


def _modelfile(tok: Any, template: str, task: str):
    mf = build_modelfile(
        "m.gguf",
        template,
        eos_tokens=[tok.eos_token],
        vocab=tok.get_vocab().keys(),
        parameters={"temperature": 0.7},
        task=task,
        bos_token=tok.bos_token or "",
        eos_token=tok.eos_token or "",
    )
    return parse_modelfile(mf.render())


@pytest.mark.parametrize("family", list(fm.FAMILIES))
@pytest.mark.parametrize("task", ["describer", "qa"])
def test_modelfile_renders_the_training_prompt(tokenizers: dict, family: str, task: str) -> None:
    tok = tokenizers[family]
    setup = chat_setup(_config(task), tok)
    mf = _modelfile(tok, setup.template, task)
    assert mf.system == TASK_SYSTEM[task]  # the prompt the model was trained with
    assert mf.stops == STOPS[family]  # every end token of the family
    bos = tok.bos_token or ""
    add_bos = family == "llama3.2"  # llama.cpp/Ollama add BOS as a token; the Jinja writes it as text

    def training(m):
        return fidelity.strip_bos(render_jinja(setup.template, m, bos_token=bos), bos, add_bos)

    golden = fidelity.default_golden(task)
    check = fidelity.check_templates(
        fidelity.served(golden, mf.system),
        {"training": training, "modelfile": lambda m: fidelity.ollama_render(mf, m)},
    )
    assert check.passed, check.describe()


@pytest.mark.parametrize("family", list(fm.FAMILIES))
def test_bare_title_in_ollama_is_the_routers_prompt(tokenizers: dict, family: str) -> None:
    """`ollama run prodtune-describer "<title>"` sends one user turn: SYSTEM + TEMPLATE must turn it
    into exactly the prompt the router builds with describer_messages(title)."""
    tok = tokenizers[family]
    setup = chat_setup(_config("describer"), tok)
    mf = _modelfile(tok, setup.template, "describer")
    bare = fidelity.ollama_render(mf, [{"role": "user", "content": TITLE}])
    routed = tok.apply_chat_template(
        chat_format.describer_messages(TITLE), chat_template=setup.template, tokenize=False,
        add_generation_prompt=True,
    )  # fmt: skip
    assert fidelity.strip_bos(routed, tok.bos_token or "", family == "llama3.2") == bare
    assert chat_format.DESCRIBER_SYSTEM in bare and f"{TITLE}<" in bare


@pytest.mark.parametrize("family", list(fm.FAMILIES))
def test_wrong_go_template_fails_the_gate(tokenizers: dict, family: str) -> None:
    tok = tokenizers[family]
    setup = chat_setup(_config("qa"), tok)
    mf = _modelfile(tok, setup.template, "qa")
    other = chat_families.CHATML if family == "llama3.2" else chat_families.LLAMA3
    mf.template = other.go_template(chat_families.LLAMA3.pin(tokenizers["llama3.2"].chat_template))
    golden = fidelity.served(fidelity.default_golden("qa"), mf.system)
    check = fidelity.check_templates(
        golden,
        {"training": lambda m: render_jinja(setup.template, m), "modelfile": lambda m: fidelity.ollama_render(mf, m)},
    )  # fmt: skip
    assert not check.passed and len(check.mismatches) == len(golden)
    # A Llama Modelfile whose date differs from the training date: also caught.
    if family == "llama3.2":
        mf.template = chat_families.LLAMA3.go_template(setup.template).replace(FIXED_DATE, "27 Jul 2024")
        stale = fidelity.check_templates(
            golden,
            {"training": lambda m: render_jinja(setup.template, m),
             "modelfile": lambda m: fidelity.ollama_render(mf, m)},
        )  # fmt: skip
        assert not stale.passed and "27 Jul 2024" in stale.mismatches[0].got


# --- masking and truncation, token by token ------------------------------------------------------


@pytest.mark.parametrize("family", list(fm.FAMILIES))
@pytest.mark.parametrize("task", ["describer", "qa"])
def test_completion_only_mask_token_by_token(tokenizers: dict, family: str, task: str) -> None:
    tok = tokenizers[family]
    setup = chat_setup(_config(task), tok)
    messages = _messages(task)
    row = tokenize_example(tok, messages, setup.template, 512, setup.turn_end)
    assert isinstance(row, Tokenized) and not row.truncated
    prompt_text = tok.apply_chat_template(
        messages[:-1], chat_template=setup.template, tokenize=False, add_generation_prompt=True
    )
    prompt_ids = tok(prompt_text, add_special_tokens=False)["input_ids"]
    assert row.input_ids[: row.prompt_len] == prompt_ids  # exactly what inference feeds the model
    full_ids = tok(tok.apply_chat_template(messages, chat_template=setup.template, tokenize=False),
                   add_special_tokens=False)["input_ids"]  # fmt: skip
    assert row.input_ids == full_ids
    turn_end_id = tok.convert_tokens_to_ids(setup.turn_end)
    for i, (token, label) in enumerate(zip(row.input_ids, row.labels, strict=True)):
        assert label == (-100 if i < row.prompt_len else token), i
    completion = row.labels[row.prompt_len :]
    assert turn_end_id in completion  # the end-of-turn token is in the loss
    assert tok.decode(completion).startswith(messages[-1]["content"] + setup.turn_end)
    if family == "llama3.2":
        assert row.input_ids.count(128000) == 1  # BOS once: the template writes it, nobody adds it
        assert completion[-1] == turn_end_id
    else:
        assert completion[-2:] == [turn_end_id, tok.convert_tokens_to_ids("Ċ")]  # "<|im_end|>\n"


@pytest.mark.parametrize("family", list(fm.FAMILIES))
def test_truncation_keeps_the_end_of_turn_token(tokenizers: dict, family: str) -> None:
    tok = tokenizers[family]
    setup = chat_setup(_config(), tok)
    long = " ".join(f"Detail {i}: sturdy, washable and light." for i in range(200))
    messages = chat_format.describer_messages(TITLE, long)
    full = tokenize_example(tok, messages, setup.template, 4096, setup.turn_end)
    cut = tokenize_example(tok, messages, setup.template, 96, setup.turn_end)
    assert isinstance(full, Tokenized) and isinstance(cut, Tokenized)
    assert cut.truncated and len(cut.input_ids) == 96
    turn_end_id = tok.convert_tokens_to_ids(setup.turn_end)
    last = len(full.input_ids) - 1 - full.input_ids[::-1].index(turn_end_id)
    tail = full.input_ids[last:]  # the answer's end-of-turn token and what follows it
    assert cut.input_ids[-len(tail) :] == tail and cut.labels[-len(tail) :] == tail
    body = cut.input_ids[cut.prompt_len : -len(tail)]
    assert body == full.input_ids[cut.prompt_len : cut.prompt_len + len(body)]  # cut inside the answer
    assert tok.decode(body).startswith("Detail 0: sturdy")


def test_fit_completion_edges() -> None:
    assert fit_completion([1, 2, 3, 9, 5], 10, 9) == [1, 2, 3, 9, 5]
    assert fit_completion([1, 2, 3, 9, 5], 4, 9) == [1, 2, 9, 5]
    assert fit_completion([1, 2, 3, 9, 5], 2, 9) == [9, 5]
    assert fit_completion([1, 2, 3, 4], 2, 9) == [1, 2]  # no end token: plain cut


# --- one list of end tokens ----------------------------------------------------------------------


def test_serving_and_finetune_read_the_same_end_tokens() -> None:
    from components.finetune.core import end_tokens
    from serving.llm.llamacpp import end_markers

    for family in chat_families.FAMILIES.values():
        probe = "".join(family.markers)
        assert end_markers(probe) == family.end_tokens

    class Tok:
        eos_token = "<|eot_id|>"

        def get_vocab(self):
            return {t: i for i, t in enumerate(chat_families.known_end_tokens())}

        def convert_ids_to_tokens(self, ids):
            return [list(self.get_vocab())[i] for i in ids]

    assert end_tokens(Tok(), None, "llama3") == list(chat_families.LLAMA3.end_tokens)
    assert end_markers("{{ messages }}") == chat_families.known_end_tokens()


def test_llama_cpp_python_renders_the_pinned_date(tokenizers: dict) -> None:
    """Serving's llama.cpp backend renders the GGUF-embedded Jinja with its own formatter, which
    defines strftime_now: the pinned template keeps the training date there too."""
    jinja = pytest.importorskip("llama_cpp.llama_chat_format", reason="llama-cpp-python not installed")
    tok = tokenizers["llama3.2"]
    raw = tok.chat_template
    messages = _messages("qa", None)
    today = datetime.now().strftime("%d %b %Y")
    unpinned = jinja.Jinja2ChatFormatter(raw, eos_token="<|eot_id|>", bos_token="<|begin_of_text|>")
    pinned = jinja.Jinja2ChatFormatter(
        chat_families.LLAMA3.pin(raw), eos_token="<|eot_id|>", bos_token="<|begin_of_text|>"
    )
    if today != FIXED_DATE:
        assert f"Today Date: {today}" in unpinned(messages=messages).prompt  # the trap, in serving
    prompt = pinned(messages=messages).prompt
    assert f"Today Date: {FIXED_DATE}\n\n" in prompt and (today == FIXED_DATE or today not in prompt)
    assert prompt == render_jinja(chat_families.LLAMA3.pin(raw), messages, bos_token="<|begin_of_text|>")
