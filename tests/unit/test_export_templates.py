"""Modelfile generation (ChatML, Llama 3) and the template half of the fidelity gate."""

from __future__ import annotations

import pytest

from components.common.chat_families import default_system_prompt
from components.common.errors import InputError
from components.export.fidelity import (
    check_templates,
    default_golden,
    ollama_render,
    ollama_values,
    render_jinja,
    strip_bos,
)
from components.export.modelfile import (
    Modelfile,
    build_modelfile,
    detect_family,
    go_template,
    parse_modelfile,
    stop_tokens,
)

# SmolLM2-135M-Instruct's template, verbatim (it inserts a default system prompt).
SMOLLM2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
    "trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Qwen2.5-Instruct's template without the tool-calling branches.
QWEN25 = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. "
    "You are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
# Meta-Llama-3-8B-Instruct's template.
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
ALPACA = "{% for m in messages %}### {{ m['role'] }}:\n{{ m['content'] }}\n{% endfor %}### Response:\n"

CHATML_VOCAB = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "hello"]
LLAMA3_VOCAB = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|eom_id|>"]
PARAMS = {"temperature": 0.7, "num_ctx": 2048}


def _modelfile(template: str, vocab: list[str], eos: str, bos: str = "") -> Modelfile:
    return build_modelfile(
        "m.gguf", template, eos_tokens=[eos], vocab=vocab, parameters=PARAMS, bos_token=bos, eos_token=eos
    )


def test_family_detection() -> None:
    assert detect_family(SMOLLM2) == "chatml"
    assert detect_family(QWEN25) == "chatml"
    assert detect_family(LLAMA3) == "llama3"
    with pytest.raises(InputError, match="unknown chat template family"):
        detect_family(ALPACA)


def test_default_system_prompt_is_extracted_from_the_jinja() -> None:
    assert (
        default_system_prompt(SMOLLM2)
        == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    )
    assert (
        default_system_prompt(QWEN25)
        == "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    )
    assert default_system_prompt(LLAMA3, bos_token="<|begin_of_text|>") is None


def test_stop_tokens_include_every_end_token_once() -> None:
    # Qwen declares <|im_end|> as eos but may emit <|endoftext|>: both must stop generation.
    assert stop_tokens(["<|im_end|>"], CHATML_VOCAB) == ["<|im_end|>", "<|endoftext|>"]
    assert stop_tokens(["<|eot_id|>", "<|eot_id|>"], LLAMA3_VOCAB) == [
        "<|eot_id|>",
        "<|eom_id|>",
        "<|end_of_text|>",
    ]
    # With the template, only its family's end tokens (a ChatML vocab may hold stray others).
    assert stop_tokens([], [*CHATML_VOCAB, "<|eot_id|>"], SMOLLM2) == ["<|im_end|>", "<|endoftext|>"]
    with pytest.raises(InputError):
        stop_tokens([], ["a", "b"])


def test_modelfile_text_round_trips() -> None:
    mf = _modelfile(SMOLLM2, CHATML_VOCAB, "<|im_end|>")
    text = mf.render()
    assert text.startswith("FROM ./m.gguf\n")
    assert 'PARAMETER stop "<|im_end|>"\nPARAMETER stop "<|endoftext|>"\n' in text
    assert "PARAMETER temperature 0.7\nPARAMETER num_ctx 2048\n" in text
    back = parse_modelfile(text)
    assert back.template == go_template(SMOLLM2)
    assert back.system == mf.system
    assert back.stops == mf.stops
    assert back.parameters == PARAMS


def test_parse_modelfile_defaults_to_prompt_template_and_rejects_garbage() -> None:
    assert parse_modelfile("FROM ./x.gguf\n").template == "{{ .Prompt }}"
    with pytest.raises(InputError):
        parse_modelfile('TEMPLATE """never closed\n')
    with pytest.raises(InputError, match="no FROM"):
        parse_modelfile("PARAMETER stop x\n")


@pytest.mark.parametrize(
    ("template", "vocab", "eos", "bos", "add_bos"),
    [
        (SMOLLM2, CHATML_VOCAB, "<|im_end|>", "<|im_start|>", False),
        (QWEN25, CHATML_VOCAB, "<|im_end|>", "", False),
        (LLAMA3, LLAMA3_VOCAB, "<|eot_id|>", "<|begin_of_text|>", True),
    ],
)
@pytest.mark.parametrize("task", ["describer", "qa"])
def test_generated_modelfile_renders_the_jinja_prompt(template, vocab, eos, bos, add_bos, task) -> None:
    mf = parse_modelfile(_modelfile(template, vocab, eos, bos).render())
    renderers = {
        "training": lambda m: strip_bos(
            render_jinja(template, m, bos_token=bos, eos_token=eos), bos, add_bos
        ),
        "modelfile": lambda m: ollama_render(mf, m),
    }
    check = check_templates(default_golden(task), renderers)
    assert check.passed, check.describe()
    assert check.conversations == 5


def test_wrong_family_template_fails_the_gate_with_evidence() -> None:
    # A Llama 3 TEMPLATE on a ChatML model: the classic broken Ollama import.
    wrong = Modelfile(from_="./m.gguf", template=go_template(LLAMA3), stops=["<|eot_id|>"])
    renderers = {
        "training": lambda m: render_jinja(SMOLLM2, m),
        "modelfile": lambda m: ollama_render(wrong, m),
    }
    check = check_templates(default_golden("qa"), renderers)
    assert not check.passed
    assert len(check.mismatches) == 5
    assert check.mismatches[0].source == "modelfile"
    assert "<|im_start|>" in check.mismatches[0].expected
    assert "chat templates disagree" in check.describe()


def test_prompt_fallback_template_fails_the_gate() -> None:
    # What Ollama uses when a GGUF import loses the template.
    fallback = parse_modelfile("FROM ./m.gguf\n")
    renderers = {
        "training": lambda m: render_jinja(SMOLLM2, m),
        "modelfile": lambda m: ollama_render(fallback, m),
    }
    assert not check_templates(default_golden("describer"), renderers).passed


def test_missing_default_system_prompt_fails_only_system_less_conversations() -> None:
    mf = _modelfile(SMOLLM2, CHATML_VOCAB, "<|im_end|>")
    mf.system = None
    renderers = {"training": lambda m: render_jinja(SMOLLM2, m), "modelfile": lambda m: ollama_render(mf, m)}
    check = check_templates(default_golden("describer"), renderers)
    assert [m.conversation for m in check.mismatches] == [4]


def test_renderer_error_is_a_mismatch_not_a_crash() -> None:
    broken = Modelfile(from_="./m.gguf", template="{{ $x := .System }}")
    renderers = {
        "training": lambda m: render_jinja(SMOLLM2, m),
        "modelfile": lambda m: ollama_render(broken, m),
    }
    check = check_templates(default_golden("qa")[:1], renderers)
    assert not check.passed and check.mismatches[0].got.startswith("<error:")


def test_ollama_values_prepend_system_and_collate_roles() -> None:
    mf = Modelfile(from_="./m.gguf", template="", system="default")
    values = ollama_values(mf, [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    assert values["System"] == "default"
    assert values["Messages"] == [
        {"Role": "system", "Content": "default"},
        {"Role": "user", "Content": "a\n\nb"},
    ]
    own = ollama_values(mf, [{"role": "system", "content": "mine"}, {"role": "user", "content": "q"}])
    assert own["System"] == "mine" and len(own["Messages"]) == 2


def test_strip_bos_only_when_the_runtime_adds_it() -> None:
    assert strip_bos("<s>x", "<s>", True) == "x"
    assert strip_bos("<s>x", "<s>", False) == "<s>x"
    assert strip_bos("x", "<s>", True) == "x"


def test_golden_conversations_use_the_served_chat_format() -> None:
    from components.common.chat_format import DESCRIBER_SYSTEM, QA_SYSTEM

    assert default_golden("describer")[0][0]["content"] == DESCRIBER_SYSTEM
    assert default_golden("qa")[0][0]["content"] == QA_SYSTEM
    assert all(c[-1]["role"] == "user" for c in default_golden("qa"))
