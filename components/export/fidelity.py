"""Template fidelity gate: the model is served with exactly the prompt it was trained on.

Two checks, both must pass or the export fails:

1. Prompt strings. For golden conversations, the training chat template (Jinja), the tokenizer's
   `apply_chat_template`, the template embedded in the GGUF (Jinja, rendered like transformers does)
   and the Modelfile's Go TEMPLATE (rendered with Ollama's message handling, see `ollama_render`)
   must give the same string. The GGUF/Ollama side also tokenizes it: the token ids must equal the
   HF ids (a doubled or missing BOS shows up here, not in the strings).
2. Greedy agreement. The GGUF at each level must continue golden prompts like the merged HF model:
   `token_agreement` (teacher-forced: share of positions where the GGUF's argmax equals the HF
   greedy token, given the same prefix) and `prefix_match` (free-running greedy: common prefix /
   longer length) must reach the configured minimum for that level.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from components.common import chat_format

# Rendering lives with the chat families (one owner); re-exported for the gate's callers.
from components.common.chat_families import render_jinja, with_system  # noqa: F401
from components.export import gotemplate
from components.export.modelfile import Modelfile

Message = dict[str, str]
Renderer = Callable[[list[Message]], str]


# --- rendering ---------------------------------------------------------------------------------


def ollama_values(modelfile: Modelfile, messages: Sequence[Message]) -> dict[str, Any]:
    """The values Ollama's chat endpoint gives a TEMPLATE (server/prompt.go, template/template.go):

    the Modelfile SYSTEM is prepended when the conversation has no system message; consecutive
    messages of one role are joined with a blank line; `.System` is all system contents joined.
    """
    msgs = with_system(messages, modelfile.system)
    collated: list[dict[str, str]] = []
    for m in msgs:
        if collated and collated[-1]["Role"] == m["role"]:
            collated[-1]["Content"] += "\n\n" + m["content"]
        else:
            collated.append({"Role": m["role"], "Content": m["content"]})
    system = "\n\n".join(m["content"] for m in msgs if m["role"] == "system")
    last_user = next((m["Content"] for m in reversed(collated) if m["Role"] == "user"), "")
    return {
        "System": system,
        "Messages": collated,
        "Prompt": last_user,
        "Response": "",
        "Tools": [],
        "Suffix": "",
    }


def ollama_render(modelfile: Modelfile, messages: Sequence[Message]) -> str:
    """The prompt Ollama would build for `messages` from the Modelfile (Go template subset)."""
    return gotemplate.render(modelfile.template, ollama_values(modelfile, messages))


# --- golden conversations ----------------------------------------------------------------------

_PRODUCTS = [
    (
        "Stainless Steel Insulated Water Bottle, 32 oz",
        "Keeps drinks cold for 24 hours and hot for 12. BPA free.",
    ),
    ("Girls Ballet Tutu Neon Pink", "High quality 3 layer ballet tutu, 12 inches in length, elastic waist."),
    (
        "USB-C Charging Cable 6ft, Braided",
        "Nylon braided cable, supports 60W fast charging and data transfer.",
    ),
]


def default_golden(task: str) -> list[list[Message]]:
    """Golden conversations in the served chat format (components.common.chat_format).

    The last ones carry no system message: the Jinja renders them with its own default (if any),
    a runtime with a default system prompt (the Modelfile's SYSTEM) with that one prepended.
    """
    convs: list[list[Message]] = []
    for title, content in _PRODUCTS:
        if task == "describer":
            convs.append(chat_format.describer_messages(title))
        else:
            convs.append(
                chat_format.qa_messages(
                    f"What is special about the {title.split(',')[0]}?", [(title, content)]
                )
            )
    # Multi-turn and system-less conversations exercise the loop and any default system prompt;
    # the bare user turn is what `ollama run prodtune-<task> "<text>"` sends.
    first = chat_format.describer_messages(_PRODUCTS[0][0], _PRODUCTS[0][1])
    convs.append([*first, {"role": "user", "content": "Make it shorter."}])
    convs.append([m for m in convs[0] if m["role"] != "system"])
    return convs


def served(golden: Sequence[list[Message]], system: str | None) -> list[list[Message]]:
    """The conversations as a runtime with default system prompt `system` renders them."""
    return [with_system(m, system) for m in golden]


# --- check 1: prompt strings and tokens --------------------------------------------------------


@dataclass
class Mismatch:
    conversation: int
    source: str
    reference: str
    position: int
    expected: str
    got: str


@dataclass
class TemplateCheck:
    passed: bool
    conversations: int
    sources: list[str]
    mismatches: list[Mismatch] = field(default_factory=list)

    def describe(self) -> str:
        if self.passed:
            return f"templates agree on {self.conversations} golden conversations ({', '.join(self.sources)})"
        lines = [f"chat templates disagree ({len(self.mismatches)} mismatch(es)):"]
        for m in self.mismatches[:5]:
            lines.append(
                f"  conversation {m.conversation}: {m.source} != {m.reference} at char {m.position}: "
                f"expected {m.expected!r}, got {m.got!r}"
            )
        return "\n".join(lines)


def _first_diff(a: str, b: str) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def check_templates(
    golden: Sequence[list[Message]], renderers: Mapping[str, Renderer], reference: str | None = None
) -> TemplateCheck:
    """Render every golden conversation with every source; all must equal the reference's string.

    A renderer that raises (unsupported template syntax, Jinja error) is a mismatch, not a crash.
    """
    names = list(renderers)
    reference = reference or names[0]
    check = TemplateCheck(passed=True, conversations=len(golden), sources=names)
    for i, messages in enumerate(golden):
        expected = renderers[reference](list(messages))
        for name in names:
            if name == reference:
                continue
            try:
                got = renderers[name](list(messages))
            except Exception as exc:  # any render failure is a fidelity failure, reported as such
                check.mismatches.append(Mismatch(i, name, reference, 0, expected[:60], f"<error: {exc}>"))
                continue
            if got != expected:
                pos = _first_diff(expected, got)
                check.mismatches.append(
                    Mismatch(
                        i,
                        name,
                        reference,
                        pos,
                        expected[max(0, pos - 10) : pos + 50],
                        got[max(0, pos - 10) : pos + 50],
                    )
                )
    check.passed = not check.mismatches
    return check


def merge_checks(*checks: TemplateCheck) -> TemplateCheck:
    """One verdict over several template checks (e.g. as given, and as served with a default SYSTEM)."""
    sources = list(dict.fromkeys(s for c in checks for s in c.sources))
    mismatches = [m for c in checks for m in c.mismatches]
    conversations = max((c.conversations for c in checks), default=0)
    return TemplateCheck(not mismatches, conversations, sources, mismatches)


def strip_bos(text: str, bos_token: str, add_bos: bool) -> str:
    """Jinja templates that write BOS themselves (Llama 3) vs runtimes that add it as a token:
    compare strings without it; the token comparison then checks BOS appears exactly once."""
    if add_bos and bos_token and text.startswith(bos_token):
        return text[len(bos_token) :]
    return text


# --- check 2: greedy agreement -----------------------------------------------------------------


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass
class Agreement:
    level: str
    token_agreement: float
    prefix_match: float
    exact: float
    prompt_tokens_match: bool
    samples: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_agreement(
    runner: Any,
    level: str,
    prompts: Sequence[Sequence[int]],
    hf_outputs: Sequence[Sequence[int]],
    gguf_prompts: Sequence[Sequence[int]],
    n_tokens: int,
    stop_ids: set[int],
) -> Agreement:
    """Compare a GGUF (a GGUFRunner) with HF greedy outputs on the same prompt tokens."""
    agree = total = 0
    prefixes: list[float] = []
    exact = 0
    samples = []
    for prompt, ref in zip(prompts, hf_outputs, strict=True):
        free, forced = runner.greedy_and_forced(prompt, n_tokens, stop_ids, ref)
        if ref:
            preds = forced.argmax(axis=1)
            agree += int(sum(int(p) == int(r) for p, r in zip(preds, ref, strict=True)))
            total += len(ref)
        longest = max(len(free), len(ref), 1)
        prefixes.append(common_prefix(free, ref) / longest)
        exact += int(list(free) == list(ref))
        samples.append({"hf": runner.detokenize(ref), "gguf": runner.detokenize(free)})
    return Agreement(
        level=level,
        token_agreement=agree / max(total, 1),
        prefix_match=sum(prefixes) / max(len(prefixes), 1),
        exact=exact / max(len(prompts), 1),
        prompt_tokens_match=all(list(a) == list(b) for a, b in zip(prompts, gguf_prompts, strict=True)),
        samples=samples,
    )


def hf_greedy(
    model_dir: str | Path, prompts: Sequence[Sequence[int]], n_tokens: int, stop_ids: set[int]
) -> list[list[int]]:
    """Greedy continuations from the merged HF model (CPU; float32, bfloat16 above 1.5B parameters),
    cut after the first stop token."""
    import torch
    from transformers import AutoModelForCausalLM

    from components.export.precision import reference_dtype  # float32 small, bfloat16 for 7B

    model = AutoModelForCausalLM.from_pretrained(
        str(model_dir), dtype=getattr(torch, reference_dtype(model_dir))
    )
    model.eval()
    outs: list[list[int]] = []
    with torch.inference_mode():
        for prompt in prompts:
            ids = torch.tensor([list(prompt)], dtype=torch.long)
            gen = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=n_tokens,
                do_sample=False,
                num_beams=1,
                repetition_penalty=1.0,
                eos_token_id=sorted(stop_ids),
                pad_token_id=sorted(stop_ids)[0],
            )
            new = [int(t) for t in gen[0, ids.shape[1] :]]
            cut = next((i + 1 for i, t in enumerate(new) if t in stop_ids), len(new))
            outs.append(new[:cut])
    del model
    return outs
