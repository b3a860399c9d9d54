"""A minimal renderer for the subset of Go `text/template` that Ollama Modelfile TEMPLATEs use.

We cannot run Ollama here, yet the Modelfile's TEMPLATE must render exactly the prompt the model
was trained on. This renders the templates `modelfile.py` writes (and the common Ollama idioms)
so the fidelity gate can compare strings. Supported:

- text, `{{ pipeline }}` output, trim markers `{{-` / `-}}`, comments `{{/* ... */}}`
- `if` / `else if` / `else` / `end`, `range` (dot becomes the element) / `else` / `end`
- `with` / `else` / `end`
- fields `.A.B`, `$.A`, `.` and `$`; string, int and bool literals; parenthesised pipelines
- functions `eq`, `ne`, `not`, `and`, `or`, `len`, `index`

Anything else raises `TemplateSyntaxError`: an unsupported template must fail the gate loudly, not
render something plausible. Not checked against a live Ollama (see docs/export.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class TemplateSyntaxError(ValueError):
    """The template uses syntax outside the supported subset, or is malformed."""


_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_TOKEN = re.compile(r'\s*(?:(\()|(\))|("(?:[^"\\]|\\.)*")|(`[^`]*`)|([^\s()]+))')


@dataclass
class _Node:
    kind: str  # "text" | "output" | "if" | "range" | "with"
    text: str = ""
    expr: list[Any] = field(default_factory=list)
    body: list[_Node] = field(default_factory=list)
    else_body: list[_Node] = field(default_factory=list)


def _lex(source: str) -> list[tuple[str, str]]:
    """Split into ("text", s) and ("action", s) items, applying trim markers."""
    items: list[tuple[str, str]] = []
    pos = 0
    trim_next = False
    for m in _ACTION.finditer(source):
        text = source[pos : m.start()]
        if trim_next:
            text = text.lstrip()
        if m.group(1):
            text = text.rstrip()
        if text:
            items.append(("text", text))
        action = m.group(2).strip()
        if not (action.startswith("/*") and action.endswith("*/")):
            items.append(("action", action))
        trim_next = bool(m.group(3))
        pos = m.end()
    tail = source[pos:]
    if trim_next:
        tail = tail.lstrip()
    if "{{" in tail:
        raise TemplateSyntaxError(f"unclosed action near {tail[:30]!r}")
    if tail:
        items.append(("text", tail))
    return items


def _parse_expr(text: str) -> list[Any]:
    """A pipeline as a nested list: [fn_or_operand, args...]; parentheses make sub-lists."""
    stack: list[list[Any]] = [[]]
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise TemplateSyntaxError(f"cannot parse {text!r}")
        pos = m.end()
        if m.group(1):
            stack.append([])
        elif m.group(2):
            if len(stack) == 1:
                raise TemplateSyntaxError(f"unbalanced ')' in {text!r}")
            inner = stack.pop()
            chained = re.compile(r"\.[A-Za-z_][\w.]*").match(text, pos)
            if chained:  # `(index .Messages 0).Role`: a field of the parenthesised value
                stack[-1].append(("chain", (inner, chained.group(0))))
                pos = chained.end()
            else:
                stack[-1].append(("call", inner))
        elif m.group(3):
            stack[-1].append(("lit", bytes(m.group(3)[1:-1], "utf-8").decode("unicode_escape")))
        elif m.group(4):
            stack[-1].append(("lit", m.group(4)[1:-1]))
        else:
            stack[-1].append(_atom(m.group(5)))
    if len(stack) != 1:
        raise TemplateSyntaxError(f"unbalanced '(' in {text!r}")
    return stack[0]


_FUNCS = {"eq", "ne", "not", "and", "or", "len", "index"}


def _atom(tok: str) -> tuple[str, Any]:
    if tok in ("true", "false"):
        return ("lit", tok == "true")
    if re.fullmatch(r"-?\d+", tok):
        return ("lit", int(tok))
    if tok == "." or tok == "$" or tok.startswith(".") or tok.startswith("$."):
        return ("field", tok)
    if tok in _FUNCS:
        return ("fn", tok)
    raise TemplateSyntaxError(
        f"unsupported token {tok!r} (variables, pipes and other functions are not supported)"
    )


def parse(source: str) -> list[_Node]:
    items = _lex(source)
    nodes, rest, closer = _parse_block(items, 0)
    if closer is not None:
        raise TemplateSyntaxError(f"unexpected {{{{ {closer} }}}}")
    if rest != len(items):
        raise TemplateSyntaxError("trailing content after template end")
    return nodes


def _parse_block(items: list[tuple[str, str]], i: int) -> tuple[list[_Node], int, str | None]:
    """Parse until `end`/`else...`; return (nodes, next index, the closing action or None)."""
    nodes: list[_Node] = []
    while i < len(items):
        kind, text = items[i]
        i += 1
        if kind == "text":
            nodes.append(_Node("text", text=text))
            continue
        word = text.split(None, 1)[0] if text else ""
        if word == "end" or word == "else":
            return nodes, i, text
        if word in ("if", "range", "with"):
            node, i = _parse_control(word, text[len(word) :], items, i)
            nodes.append(node)
        elif word in ("define", "template", "block", "break", "continue") or ":=" in text:
            raise TemplateSyntaxError(f"unsupported action {{{{ {text} }}}}")
        else:
            nodes.append(_Node("output", expr=_parse_expr(text)))
    return nodes, i, None


def _parse_control(word: str, expr: str, items: list[tuple[str, str]], i: int) -> tuple[_Node, int]:
    node = _Node(word, expr=_parse_expr(expr))
    node.body, i, closer = _parse_block(items, i)
    if closer is None:
        raise TemplateSyntaxError(f"{{{{ {word} }}}} without {{{{ end }}}}")
    if closer.startswith("else"):
        rest = closer[len("else") :].strip()
        if rest.startswith("if ") and word == "if":
            # `else if X` is an `else` holding a nested `if` that shares our `end`.
            nested, i = _parse_control("if", rest[2:], items, i)
            node.else_body = [nested]
            return node, i
        if rest:
            raise TemplateSyntaxError(f"unsupported {{{{ {closer} }}}}")
        node.else_body, i, closer = _parse_block(items, i)
        if closer != "end":
            raise TemplateSyntaxError(f"{{{{ {word} }}}}...{{{{ else }}}} without {{{{ end }}}}")
    return node, i


def truthy(value: Any) -> bool:
    """Go template truth: false, 0, nil, empty string/list/map are false."""
    if value is None or value is False:
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value != 0
    if isinstance(value, (str, Sequence, Mapping)):
        return len(value) > 0
    return True


def _field(path: str, dot: Any, root: Any) -> Any:
    if path == ".":
        return dot
    if path == "$":
        return root
    obj, names = (root, path[2:]) if path.startswith("$.") else (dot, path[1:])
    for name in names.split("."):
        if isinstance(obj, Mapping):
            if name not in obj:
                raise TemplateSyntaxError(f"no field {name!r} in {path!r}")
            obj = obj[name]
        elif hasattr(obj, name):
            obj = getattr(obj, name)
        else:
            raise TemplateSyntaxError(f"cannot evaluate {path!r}")
    return obj


def _eval(expr: list[Any], dot: Any, root: Any) -> Any:
    if not expr:
        raise TemplateSyntaxError("empty pipeline")
    head = expr[0]
    args = [_eval_arg(a, dot, root) for a in expr[1:]]
    if head[0] != "fn":
        if args:
            raise TemplateSyntaxError("only functions take arguments")
        return _eval_arg(head, dot, root)
    fn = head[1]
    if fn == "eq":
        return any(args[0] == a for a in args[1:])
    if fn == "ne":
        return args[0] != args[1]
    if fn == "not":
        return not truthy(args[0])
    if fn == "and":
        for a in args:
            if not truthy(a):
                return a
        return args[-1]
    if fn == "or":
        for a in args:
            if truthy(a):
                return a
        return args[-1]
    if fn == "len":
        return len(args[0])
    if fn == "index":
        obj = args[0]
        for key in args[1:]:
            obj = obj[key]
        return obj
    raise TemplateSyntaxError(f"unsupported function {fn}")


def _eval_arg(arg: tuple[str, Any], dot: Any, root: Any) -> Any:
    kind, value = arg
    if kind == "lit":
        return value
    if kind == "field":
        return _field(value, dot, root)
    if kind == "call":
        return _eval(value, dot, root)
    if kind == "chain":
        inner, path = value
        base = _eval(inner, dot, root)
        return _field(path, base, root)
    raise TemplateSyntaxError(f"function {value} used as a value")


def _to_text(value: Any) -> str:
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _render(nodes: list[_Node], dot: Any, root: Any, out: list[str]) -> None:
    for node in nodes:
        if node.kind == "text":
            out.append(node.text)
        elif node.kind == "output":
            out.append(_to_text(_eval(node.expr, dot, root)))
        elif node.kind == "if":
            _render(node.body if truthy(_eval(node.expr, dot, root)) else node.else_body, dot, root, out)
        elif node.kind == "with":
            value = _eval(node.expr, dot, root)
            if truthy(value):
                _render(node.body, value, root, out)
            else:
                _render(node.else_body, dot, root, out)
        elif node.kind == "range":
            seq = _eval(node.expr, dot, root)
            if not truthy(seq):
                _render(node.else_body, dot, root, out)
                continue
            for item in seq.values() if isinstance(seq, Mapping) else seq:
                _render(node.body, item, root, out)


def render(source: str, data: Mapping[str, Any]) -> str:
    """Render a Go template with `data` as dot (and `$`)."""
    out: list[str] = []
    _render(parse(source), data, data, out)
    return "".join(out)
