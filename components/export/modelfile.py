"""Ollama Modelfile from the chat template the model was trained with.

Ollama does not run Jinja: its TEMPLATE is a Go template. The chat family (components.common.
chat_families: ChatML for Qwen2.5/SmolLM2, Llama 3) gives the Go template matching the training
Jinja (date pinned) and every end token, all written as `stop`s. `SYSTEM` is the system prompt the
model was trained with (components.common.chat_format, per task): Ollama prepends it to a
conversation without one, so `ollama run prodtune-describer "<title>"` renders the router's prompt.
An unknown family is an error: guessing is how fine-tunes end up served with `{{ .Prompt }}`.
The fidelity gate (fidelity.py) then proves the result renders the same prompts as the Jinja.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from components.common import chat_families, chat_format
from components.common.errors import InputError

# The system prompt each task was trained with: the Modelfile's default SYSTEM.
TASK_SYSTEM = {"describer": chat_format.DESCRIBER_SYSTEM, "qa": chat_format.QA_SYSTEM}


def detect_family(jinja_template: str) -> str:
    """The chat family name of a Jinja template (an unknown one raises, naming the template)."""
    return chat_families.detect(jinja_template).name


def go_template(jinja_template: str) -> str:
    return chat_families.detect(jinja_template).go_template(jinja_template)


def stop_tokens(
    eos_tokens: Iterable[str], vocab: Iterable[str], jinja_template: str | None = None
) -> list[str]:
    """All end tokens: the family's end tokens in the vocab (its order), then other declared eos tokens."""
    known = (
        chat_families.detect(jinja_template).end_tokens
        if jinja_template
        else chat_families.known_end_tokens()
    )
    eos_tokens, vocab = list(eos_tokens), set(vocab)
    # a declared eos token counts even when the vocab listing misses it (added tokens)
    stops = chat_families.ordered_stops(vocab | {t for t in eos_tokens if t}, eos_tokens, known)
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
    task: str | None = None,
    bos_token: str = "",
    eos_token: str = "",
) -> Modelfile:
    """TEMPLATE of the family, SYSTEM the task's trained prompt (else the Jinja's default), all stops."""
    system = TASK_SYSTEM.get(task or "") or chat_families.default_system_prompt(
        jinja_template, bos_token, eos_token
    )
    return Modelfile(
        from_=f"./{gguf_name}",
        template=go_template(jinja_template),
        system=system,
        stops=stop_tokens(eos_tokens, vocab, jinja_template),
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
