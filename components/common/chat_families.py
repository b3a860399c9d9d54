"""Chat families: the one owner of each family's template facts, read by fine-tune, export and serving.

A fine-tune served with another template, other stop tokens or another date than it was trained with
degrades badly (gibberish, endless output). So, per family, this module owns:

- detection from a Jinja chat template (or a tokenizer carrying one); an unknown template is an error
  naming it, never a guess (guessing is how fine-tunes end up served with `{{ .Prompt }}`);
- every end-of-turn / end-of-text token (all are stops: Qwen fine-tunes may emit <|endoftext|>
  instead of <|im_end|>; Llama 3 ends turns with <|eot_id|>, tool calls with <|eom_id|>);
- the token that closes an assistant turn in training (it must be in the loss, also when truncating);
- the date policy: Llama 3.x templates render "Today Date" from `strftime_now` where the renderer has
  it (transformers, llama-cpp-python) and "26 Jul 2024" elsewhere. Training pins one date into the
  template itself (`pin`), so the GGUF-embedded template, the Modelfile and every runtime render the
  prompt the model was trained on, whatever today is;
- the Go TEMPLATE of the Ollama Modelfile, which must render byte for byte what the Jinja renders for
  the conversations we serve (proved by the export's fidelity gate).

Families: `chatml` (Qwen2.5, SmolLM2: `<|im_start|>role\\n...<|im_end|>\\n`) and `llama3` (Llama 3.x
Instruct: header ids, `<|eot_id|>`, BOS written by the template).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from components.common.errors import InputError

Message = dict[str, str]

# The date Llama 3.x templates fall back to without `strftime_now`: also what llama.cpp's own
# renderer and other runtimes produce, so pinning it changes nothing for them.
FIXED_DATE = "26 Jul 2024"

_CHATML_GO = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n"
)
# Llama 3.x Instruct (3.1/3.2/3.3 Jinja without tools): one system turn always, holding the knowledge
# cutoff and the pinned date before the system message (empty when there is none); then each other
# turn. `.System` is Ollama's: the conversation's system messages, or the Modelfile SYSTEM.
_LLAMA3_GO = (
    "<|start_header_id|>system<|end_header_id|>\n\n"
    "Cutting Knowledge Date: December 2023\nToday Date: {date}\n\n"
    "{{{{ if .System }}}}{{{{ .System }}}}{{{{ end }}}}<|eot_id|>"
    '{{{{- range .Messages }}}}{{{{ if ne .Role "system" }}}}'
    "<|start_header_id|>{{{{ .Role }}}}<|end_header_id|>\n\n{{{{ .Content }}}}<|eot_id|>"
    "{{{{- end }}}}{{{{ end }}}}<|start_header_id|>assistant<|end_header_id|>\n\n"
)
# Llama 3.0's template has no system turn of its own: only the turns given.
_LLAMA3_PLAIN_GO = (
    "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
    "{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
)


@dataclass(frozen=True)
class ChatFamily:
    name: str
    label: str
    markers: tuple[str, ...]  # all present in the Jinja: this family
    end_tokens: tuple[str, ...]  # every token that ends a turn or the text: all are stops
    turn_end: str  # closes an assistant turn in the rendered training text
    system_turn: re.Pattern[str]  # the first turn of a render, if it is a system turn

    def pin(self, template: str, date_string: str = FIXED_DATE) -> str:
        """The template with its date fixed (a no-op for families without one)."""
        if self.name != "llama3" or not uses_date(template):
            return template
        pinned = f'{{%- set date_string = "{date_string}" -%}}'
        return template if template.startswith(pinned) else pinned + template

    def date_of(self, template: str) -> str | None:
        """The date a pinned template renders (None: the family has no date in its prompt)."""
        m = re.match(r'\{%- set date_string = "([^"]*)" -%\}', template)
        return m.group(1) if m else None

    def go_template(self, template: str) -> str:
        """The Modelfile TEMPLATE rendering what `template` (this family's Jinja, pinned) renders."""
        if self.name == "chatml":
            return _CHATML_GO
        if "Cutting Knowledge Date" not in template:
            return _LLAMA3_PLAIN_GO
        date = self.date_of(template)
        if uses_date(template) and date is None:
            raise InputError(
                "Llama 3 template renders today's date (strftime_now): pin it with ChatFamily.pin "
                "before export, or the served prompt changes every day",
                field="chat_template",
            )
        return _LLAMA3_GO.format(date=date or FIXED_DATE)

    def stops(self, vocab: Iterable[str], declared: Iterable[str] = ()) -> list[str]:
        """Stop strings: every end token of the family the vocab holds (in the family's order), then
        any other declared eos token. One order everywhere: summary, Modelfile and serving agree."""
        stops = ordered_stops(vocab, declared, self.end_tokens)
        if self.turn_end not in stops:
            raise InputError(
                f"the tokenizer has no {self.turn_end} token although its template is {self.label}",
                field="chat_template",
            )
        return stops


CHATML = ChatFamily(
    name="chatml",
    label="ChatML (Qwen2.5, SmolLM2)",
    markers=("<|im_start|>", "<|im_end|>"),
    end_tokens=("<|im_end|>", "<|endoftext|>"),
    turn_end="<|im_end|>",
    system_turn=re.compile(r"^<\|im_start\|>system\n(.*?)<\|im_end\|>\n", re.DOTALL),
)
LLAMA3 = ChatFamily(
    name="llama3",
    label="Llama 3.x",
    markers=("<|start_header_id|>", "<|eot_id|>"),
    end_tokens=("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"),
    turn_end="<|eot_id|>",
    system_turn=re.compile(
        r"^<\|start_header_id\|>system<\|end_header_id\|>\n\n(.*?)<\|eot_id\|>", re.DOTALL
    ),
)
FAMILIES: dict[str, ChatFamily] = {f.name: f for f in (CHATML, LLAMA3)}


class UnknownChatFamily(InputError):
    """The chat template matches no supported family."""


def detect(template: str) -> ChatFamily:
    for family in FAMILIES.values():
        if all(m in template for m in family.markers):
            return family
    head = " ".join(template.split())[:80]
    raise UnknownChatFamily(
        f"unknown chat template family for template {head!r}... (supported: "
        f"{'; '.join(f.label for f in FAMILIES.values())}); refusing to guess stops or an Ollama TEMPLATE",
        field="chat_template",
    )


def by_name(name: str) -> ChatFamily:
    if name not in FAMILIES:
        raise InputError(f"unknown chat family {name!r} (known: {', '.join(FAMILIES)})", field="chat_family")
    return FAMILIES[name]


def ordered_stops(vocab: Iterable[str], declared: Iterable[str], known: Iterable[str]) -> list[str]:
    """The end tokens `known` (a family's, in its order) that the vocab holds, then the `declared`
    eos tokens not among them; duplicates and empty names dropped. Declared order varies between
    checkpoints (tokenizer eos vs generation config), so it never decides the order."""
    vocab_set = set(vocab)
    found: list[str] = []
    for tok in [*(t for t in known if t in vocab_set), *declared]:
        if isinstance(tok, str) and tok and tok in vocab_set and tok not in found:
            found.append(tok)
    return found


def known_end_tokens() -> tuple[str, ...]:
    """Every end token of every supported family, each once (serving's stop candidates)."""
    return tuple(dict.fromkeys(t for f in FAMILIES.values() for t in f.end_tokens))


def uses_date(template: str) -> bool:
    return "date_string" in template or "strftime_now" in template


def render_jinja(
    template: str,
    messages: Sequence[Message],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
    **kwargs: Any,
) -> str:
    """Render a HF chat template the way transformers does (sandboxed, trim/lstrip blocks, and a
    real `strftime_now`, so an unpinned date shows up as today's, as it would in transformers)."""
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template).render(
        messages=list(messages),
        bos_token=bos_token,
        eos_token=eos_token,
        add_generation_prompt=add_generation_prompt,
        **kwargs,
    )


def default_system_prompt(template: str, bos_token: str = "", eos_token: str = "") -> str | None:
    """The system prompt the Jinja inserts into a conversation without one, if any."""
    family = detect(template)
    probe = [{"role": "user", "content": "\x00probe\x00"}]
    text = render_jinja(
        template, probe, bos_token=bos_token, eos_token=eos_token, add_generation_prompt=False
    )
    if bos_token and "bos_token" in template and text.startswith(bos_token):
        text = text[len(bos_token) :]  # written by the template (Llama 3), not a turn of its own
    m = family.system_turn.match(text)
    return m.group(1) if m else None


def with_system(messages: Sequence[Message], system: str | None) -> list[Message]:
    """`messages` as a runtime that prepends a default system prompt (Ollama's SYSTEM) sees them."""
    msgs = [dict(m) for m in messages]
    if system and (not msgs or msgs[0]["role"] != "system"):
        msgs.insert(0, {"role": "system", "content": system})
    return msgs
