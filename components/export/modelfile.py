"""Ollama Modelfile from the chat template the model was trained with.

Ollama does not run Jinja: its TEMPLATE is a Go template. We detect the template family from the
Jinja source (ChatML for Qwen2.5/SmolLM2, Llama 3), write the matching Go template, turn a default
system prompt baked into the Jinja (SmolLM2 adds one when a conversation has none) into `SYSTEM`
(Ollama prepends it exactly then), and list every end token of the tokenizer as a `stop`. An
unknown family is an error: guessing is how fine-tunes end up served with `{{ .Prompt }}`.
The fidelity gate (fidelity.py) then proves the result renders the same prompts as the Jinja.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from components.common.errors import InputError

Family = Literal["chatml", "llama3"]

GO_TEMPLATES: dict[str, str] = {
    # One turn per message, then the assistant header: the same bytes as the Jinja renders.
    "chatml": (
        "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
        "<|im_start|>assistant\n"
    ),
    "llama3": (
        "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
        "{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
}

# A default system turn the Jinja inserts when a conversation has none (first turn of the render).
_SYSTEM_TURN = {
    "chatml": re.compile(r"^<\|im_start\|>system\n(.*?)<\|im_end\|>\n", re.DOTALL),
    "llama3": re.compile(r"^<\|start_header_id\|>system<\|end_header_id\|>\n\n(.*?)<\|eot_id\|>", re.DOTALL),
}

# End-of-turn / end-of-text tokens of the families we serve; whichever the tokenizer has are stops.
END_TOKENS = (
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|eom_id|>",
    "<|end|>",
    "</s>",
)


def detect_family(jinja_template: str) -> Family:
    if "<|im_start|>" in jinja_template and "<|im_end|>" in jinja_template:
        return "chatml"
    if "<|start_header_id|>" in jinja_template and "<|eot_id|>" in jinja_template:
        return "llama3"
    raise InputError(
        "unknown chat template family (supported: ChatML as in Qwen2.5/SmolLM2, Llama 3); "
        "refusing to guess an Ollama TEMPLATE",
        field="chat_template",
    )


def default_system_prompt(jinja_template: str, bos_token: str = "", eos_token: str = "") -> str | None:
    """The system prompt the Jinja inserts into a conversation without one, if any."""
    from components.export.fidelity import render_jinja

    family = detect_family(jinja_template)
    probe = [{"role": "user", "content": "\x00probe\x00"}]
    text = render_jinja(
        jinja_template, probe, bos_token=bos_token, eos_token=eos_token, add_generation_prompt=False
    )
    if bos_token and text.startswith(bos_token) and family == "llama3":
        text = text[len(bos_token) :]
    m = _SYSTEM_TURN[family].match(text)
    return m.group(1) if m else None


def stop_tokens(eos_tokens: Iterable[str], vocab: Iterable[str]) -> list[str]:
    """All end tokens: the declared eos tokens first, then every known end token the vocab holds."""
    vocab_set = set(vocab)
    stops: list[str] = []
    for tok in [*eos_tokens, *(t for t in END_TOKENS if t in vocab_set)]:
        if tok and tok not in stops:
            stops.append(tok)
    if not stops:
        raise InputError("the tokenizer declares no end token: Ollama would never stop", field="eos_tokens")
    return stops


@dataclass
class Modelfile:
    from_: str
    template: str
    system: str | None = None
    stops: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)

    def render(self) -> str:
        for name, text in (("TEMPLATE", self.template), ("SYSTEM", self.system or "")):
            if '"""' in text:
                raise InputError(f'{name} contains """, which a Modelfile cannot quote', field=name.lower())
        lines = [f"FROM {self.from_}", f'TEMPLATE """{self.template}"""']
        if self.system:
            lines.append(f'SYSTEM """{self.system}"""')
        lines += [f"PARAMETER stop {_quote(s)}" for s in self.stops]
        lines += [f"PARAMETER {k} {_format_value(v)}" for k, v in self.parameters.items()]
        return "\n".join(lines) + "\n"


def build_modelfile(
    gguf_name: str,
    jinja_template: str,
    *,
    eos_tokens: Iterable[str],
    vocab: Iterable[str],
    parameters: Mapping[str, Any],
    bos_token: str = "",
    eos_token: str = "",
) -> Modelfile:
    family = detect_family(jinja_template)
    return Modelfile(
        from_=f"./{gguf_name}",
        template=GO_TEMPLATES[family],
        system=default_system_prompt(jinja_template, bos_token, eos_token),
        stops=stop_tokens(eos_tokens, vocab),
        parameters=dict(parameters),
    )


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return _quote(str(value))


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def parse_modelfile(text: str) -> Modelfile:
    """Read back a Modelfile (the subset we write, plus ordinary hand edits)."""
    values: dict[str, str] = {}
    stops: list[str] = []
    params: dict[str, Any] = {}
    pos = 0
    command = re.compile(r"\s*([A-Za-z]+)[ \t]+")
    while pos < len(text):
        m = command.match(text, pos)
        if not m:
            line_end = text.find("\n", pos)
            if text[pos : line_end if line_end >= 0 else None].strip() == "":
                pos = len(text) if line_end < 0 else line_end + 1
                continue
            raise InputError(f"cannot parse Modelfile near {text[pos : pos + 40]!r}", field="Modelfile")
        name, pos = m.group(1).upper(), m.end()
        if text.startswith('"""', pos):
            end = text.find('"""', pos + 3)
            if end < 0:
                raise InputError(f'{name}: unterminated """', field="Modelfile")
            # Triple-quoted text is taken verbatim: no unquoting, newlines kept.
            values[name], pos = text[pos + 3 : end], end + 3
            continue
        line_end = text.find("\n", pos)
        line_end = len(text) if line_end < 0 else line_end
        arg, pos = text[pos:line_end].strip(), line_end
        if name == "PARAMETER":
            key, _, raw = arg.partition(" ")
            if key == "stop":
                stops.append(_unquote(raw))
            else:
                params[key] = _parse_number(_unquote(raw))
        else:
            values[name] = _unquote(arg)
    if "FROM" not in values:
        raise InputError("Modelfile has no FROM", field="Modelfile")
    return Modelfile(
        from_=values["FROM"],
        template=values.get("TEMPLATE", "{{ .Prompt }}"),
        system=values.get("SYSTEM"),
        stops=stops,
        parameters=params,
    )


def _parse_number(raw: str) -> Any:
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw
