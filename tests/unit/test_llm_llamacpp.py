"""LlamaCppBackend: template and stop-token rules on small fakes; real generation on SmolLM2-135M."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from components.common.errors import InputError
from serving.llm.errors import BackendError
from serving.llm.llamacpp import LlamaCppBackend

SMOLLM = Path("~/.cache/prodtune/models/SmolLM2-135M-Instruct.Q4_1.gguf").expanduser()
CHATML = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
MESSAGES = [
    {"role": "system", "content": "You answer customer questions about products."},
    {
        "role": "user",
        "content": "Product: Girls Ballet Tutu\nDescription: 12 inches long.\n\nQuestion: How long is it?",
    },
]


class FakeLlama:
    """Just enough of llama_cpp.Llama: metadata, tokenize, create_chat_completion."""

    def __init__(self, metadata: dict[str, str], specials: tuple[str, ...] = ()) -> None:
        self.metadata, self.specials = metadata, specials
        self.chat_format = "chat_template.default" if "tokenizer.chat_template" in metadata else "llama-2"
        self.calls: list[dict[str, Any]] = []

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        return [1] if text.decode() in self.specials else [1, 2, 3]

    def create_chat_completion(self, **kw: Any) -> Any:
        self.calls.append(kw)
        if kw["messages"][-1]["content"] == "too long":
            raise ValueError("Requested tokens (5000) exceed context window of 2048")
        if kw["stream"]:
            return iter(
                [{"choices": [{"delta": {"role": "assistant"}}]}, {"choices": [{"delta": {"content": "hi"}}]}]
            )
        return {
            "choices": [{"message": {"content": " hi "}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1},
        }


def test_gguf_without_embedded_template_is_refused() -> None:
    with pytest.raises(InputError, match="no embedded chat template"):
        LlamaCppBackend("x.gguf", llama=FakeLlama({"general.name": "x"}))


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        LlamaCppBackend(tmp_path / "none.gguf")


def test_stops_cover_template_markers_and_special_tokens() -> None:
    fake = FakeLlama({"tokenizer.chat_template": CHATML}, specials=("<|endoftext|>",))
    backend = LlamaCppBackend("m.gguf", llama=fake)
    assert backend.stop == ["<|im_end|>", "<|endoftext|>"]  # in the template, and a single special token
    result = backend.chat(MESSAGES, max_tokens=7, temperature=0.5)
    assert (result.text, result.finish_reason, result.prompt_tokens) == ("hi", "length", 5)
    assert fake.calls[-1] == {
        "messages": MESSAGES, "max_tokens": 7, "temperature": 0.5, "stream": False, "stop": backend.stop,
    }  # fmt: skip
    assert list(backend.stream(MESSAGES)) == ["hi"]
    with pytest.raises(BackendError, match="context window"):
        backend.chat([{"role": "user", "content": "too long"}])
    exported = LlamaCppBackend("m.gguf", llama=fake, extra_stops=["<|im_end|>", "### User:"])
    assert exported.stop == ["<|im_end|>", "<|endoftext|>", "### User:"]  # + the Modelfile's, no duplicates


@pytest.fixture(scope="module")
def smol() -> LlamaCppBackend:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed")
    if not SMOLLM.is_file():
        pytest.skip(f"test GGUF missing: {SMOLLM} (scripts/setup.sh places it)")
    return LlamaCppBackend(SMOLLM, n_ctx=1024, n_threads=1)


def test_real_gguf_uses_its_embedded_template_and_end_tokens(smol: LlamaCppBackend) -> None:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    assert "<|im_start|>" in smol.chat_template
    assert smol.chat_format == "chat_template.default"  # the GGUF's own template, never the llama-2 fallback
    assert "<|im_end|>" in smol.stop
    # The prompt llama.cpp evaluated has exactly the token count of the embedded template's rendering.
    llm = smol._llm
    eos = llm.detokenize([llm.token_eos()], special=True).decode()
    bos = llm.detokenize([llm.token_bos()], special=True).decode()
    prompt = Jinja2ChatFormatter(smol.chat_template, eos_token=eos, bos_token=bos)(messages=MESSAGES).prompt
    expected = len(llm.tokenize(prompt.encode(), add_bos=False, special=True))
    result = smol.chat(MESSAGES, max_tokens=12)
    assert abs(result.prompt_tokens - expected) <= 1  # BOS handling may add one token
    assert result.text and 0 < result.completion_tokens <= 12
    assert "<|im_end|>" not in result.text and "<|im_start|>" not in result.text


def test_real_gguf_stream_matches_greedy_chat(smol: LlamaCppBackend) -> None:
    whole = smol.chat(MESSAGES, max_tokens=16).text
    pieces = list(smol.stream(MESSAGES, max_tokens=16))
    assert len(pieces) > 1
    assert "".join(pieces).strip() == whole
