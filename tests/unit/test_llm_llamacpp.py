"""LlamaCppBackend: template and stop-token rules on small fakes; real generation on SmolLM2-135M."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from components.common.errors import InputError
from serving.llm.errors import BackendBusy, BackendError
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
    call = {k: v for k, v in fake.calls[-1].items() if k != "logits_processor"}
    assert call == {
        "messages": MESSAGES, "max_tokens": 7, "temperature": 0.5, "stream": False, "stop": backend.stop,
    }  # fmt: skip
    assert list(backend.stream(MESSAGES)) == ["hi"]
    with pytest.raises(BackendError, match="context window"):
        backend.chat([{"role": "user", "content": "too long"}])
    exported = LlamaCppBackend("m.gguf", llama=fake, extra_stops=["<|im_end|>", "### User:"])
    assert exported.stop == ["<|im_end|>", "<|endoftext|>", "### User:"]  # + the Modelfile's, no duplicates


class GeneratingLlama(FakeLlama):
    """Generates token 5 until `max_tokens`, running the logits processors per token as llama.cpp does;
    a processor that makes the EOS token (2) the best choice ends the reply."""

    def token_eos(self) -> int:
        return 2

    def create_chat_completion(self, **kw: Any) -> Any:
        def tokens() -> Any:
            ids = [1, 1, 1, 1]  # a 4-token prompt
            for _ in range(kw["max_tokens"]):
                scores = np.zeros(8, dtype=np.float32)
                scores[5] = 1.0
                for proc in kw["logits_processor"]:
                    scores = proc(np.array(ids), scores)
                if int(np.argmax(scores)) == 2:
                    yield {"choices": [{"delta": {}, "finish_reason": "stop"}]}
                    return
                ids.append(5)
                yield {"choices": [{"delta": {"content": "la "}, "finish_reason": None}]}
            yield {"choices": [{"delta": {}, "finish_reason": "length"}]}

        return tokens()


def test_streamed_chat_meters_usage_and_reports_length() -> None:
    backend = LlamaCppBackend("m.gguf", llama=GeneratingLlama({"tokenizer.chat_template": CHATML}))
    pieces: list[str] = []
    result = backend.chat(MESSAGES, max_tokens=6, on_token=pieces.append)
    assert pieces == ["la "] * 6 and result.finish_reason == "length"
    assert (result.prompt_tokens, result.completion_tokens) == (4, 6)


def test_cancel_ends_generation_at_the_next_token() -> None:
    backend = LlamaCppBackend("m.gguf", llama=GeneratingLlama({"tokenizer.chat_template": CHATML}))
    cancel = threading.Event()
    pieces: list[str] = []

    def sink(piece: str) -> None:
        pieces.append(piece)
        if len(pieces) == 3:
            cancel.set()  # the client leaves after three pieces

    result = backend.chat(MESSAGES, max_tokens=500, on_token=sink, cancel=cancel)
    assert len(pieces) == 3 and result.finish_reason == "cancelled"


def test_one_reply_at_a_time_and_a_bounded_queue() -> None:

    started, release = threading.Event(), threading.Event()

    class Slow(FakeLlama):
        def create_chat_completion(self, **kw: Any) -> Any:
            started.set()
            release.wait(5)
            return super().create_chat_completion(**kw)

    backend = LlamaCppBackend("m.gguf", llama=Slow({"tokenizer.chat_template": CHATML}), max_waiting=1)
    first = threading.Thread(target=backend.chat, args=(MESSAGES,))
    first.start()
    started.wait(5)
    second = threading.Thread(target=backend.chat, args=(MESSAGES,))
    second.start()  # queues behind the first
    deadline = time.monotonic() + 5
    while backend.gate.waiting < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(BackendBusy, match="queued"):
        backend.chat(MESSAGES)  # the queue (1) is full: refused at once
    release.set()
    first.join()
    second.join()
    assert backend.gate.running == 0 and backend.gate.waiting == 0


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
