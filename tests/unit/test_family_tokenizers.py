"""The offline tokenizers of the production families reproduce the published ones (ids, specials)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("quicktok", reason="quicktok-v1 (dev dependency) not installed")

from tests.fixtures import family_models as fm


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("family-tokenizers")
    return {f: AutoTokenizer.from_pretrained(str(fm.build_tokenizer(f, root / f))) for f in fm.FAMILIES}


@pytest.mark.parametrize(
    ("family", "text", "ids"),
    [
        ("llama3.2", "Hello world", [9906, 1917]),
        ("qwen2.5", "Hello world", [9707, 1879]),
        ("qwen2.5", "你好", [108386]),
    ],
)
def test_published_ids(tokenizers: dict, family: str, text: str, ids: list[int]) -> None:
    assert tokenizers[family](text, add_special_tokens=False)["input_ids"] == ids


@pytest.mark.parametrize(
    ("family", "specials"),
    [
        (
            "llama3.2",
            {
                "<|begin_of_text|>": 128000,
                "<|end_of_text|>": 128001,
                "<|start_header_id|>": 128006,
                "<|end_header_id|>": 128007,
                "<|eom_id|>": 128008,
                "<|eot_id|>": 128009,
                "<|python_tag|>": 128010,
                "<|reserved_special_token_247|>": 128255,
            },
        ),
        (
            "qwen2.5",
            {
                "<|endoftext|>": 151643,
                "<|im_start|>": 151644,
                "<|im_end|>": 151645,
                "<tool_call>": 151657,
                "<|file_sep|>": 151664,
            },
        ),
    ],
)
def test_special_tokens_at_published_ids(tokenizers: dict, family: str, specials: dict[str, int]) -> None:
    tok = tokenizers[family]
    for text, i in specials.items():
        assert tok.convert_tokens_to_ids(text) == i
        assert tok(text, add_special_tokens=False)["input_ids"] == [i]  # never split into pieces
    assert len(tok) == max(fm.spec(family).specials)[0] + 1


def test_llama_adds_bos_qwen_does_not(tokenizers: dict) -> None:
    assert tokenizers["llama3.2"]("Hello world")["input_ids"] == [128000, 9906, 1917]
    assert tokenizers["qwen2.5"]("Hello world")["input_ids"] == [9707, 1879]
    assert tokenizers["llama3.2"].eos_token == "<|eot_id|>"
    assert tokenizers["qwen2.5"].eos_token == "<|im_end|>"
    assert tokenizers["qwen2.5"].pad_token == "<|endoftext|>"


@pytest.mark.parametrize("family", list(fm.FAMILIES))
def test_same_ids_as_quicktok_on_hard_text(tokenizers: dict, family: str) -> None:
    """Digits (Llama groups 1-3, Qwen splits), whitespace runs, CRLF, CJK, emoji, accents."""
    import quicktok

    enc = quicktok.get_encoding("llama3" if family == "llama3.2" else "qwen3")
    texts = [
        "The price is 12345 dollars, isn't it?\n\n  Tabs\tand  spaces   ",
        "Stainless Steel Bottle, 32 oz — café naïve 日本語テキスト 😀",
        "def f(x):\n    return x**2  # comment\r\n",
        "1234567890 3.14159 1,000,000 &amp; <br>",
    ]
    tok = tokenizers[family]
    for text in texts:
        assert tok(text, add_special_tokens=False)["input_ids"] == enc.encode(text), text
        assert tok.decode(enc.encode(text)) == text


def test_templates_are_the_published_ones(tokenizers: dict) -> None:
    qwen, llama = tokenizers["qwen2.5"].chat_template, tokenizers["llama3.2"].chat_template
    assert "You are Qwen, created by Alibaba Cloud. You are a helpful assistant." in qwen
    assert "{%- if tools %}" in qwen  # the tools branch
    assert 'strftime_now("%d %b %Y")' in llama and '"26 Jul 2024"' in llama  # the date branch
    assert "tools_in_user_message" in llama
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}]
    out = tokenizers["qwen2.5"].apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert out == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_build_is_cached_and_copied(tmp_path: Path) -> None:
    a = fm.cached_tokenizer_dir("qwen2.5")
    assert fm.cached_tokenizer_dir("qwen2.5") == a  # same inputs, same cache entry
    out = fm.build_tokenizer("qwen2.5", tmp_path / "tok")
    assert (out / "tokenizer.json").read_bytes() == (a / "tokenizer.json").read_bytes()
    with pytest.raises(KeyError, match="unknown family"):
        fm.spec("mistral")
