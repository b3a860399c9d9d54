"""The Go-template subset renderer used to check Modelfile TEMPLATEs without Ollama."""

from __future__ import annotations

import pytest

from components.export.gotemplate import TemplateSyntaxError, render, truthy

MSGS = {
    "System": "sys",
    "Messages": [{"Role": "user", "Content": "hi"}, {"Role": "assistant", "Content": "yo"}],
}


def test_range_and_fields() -> None:
    out = render("{{ range .Messages }}[{{ .Role }}:{{ .Content }}]{{ end }}", MSGS)
    assert out == "[user:hi][assistant:yo]"


def test_trim_markers_remove_adjacent_whitespace() -> None:
    src = "a  \n  {{- .System -}}  \n  b"
    assert render(src, MSGS) == "asysb"
    assert render("a {{ .System }} b", MSGS) == "a sys b"


def test_if_else_and_else_if() -> None:
    src = "{{ if eq .X 1 }}one{{ else if eq .X 2 }}two{{ else }}many{{ end }}"
    assert [render(src, {"X": x}) for x in (1, 2, 3)] == ["one", "two", "many"]


def test_if_on_empty_string_is_false() -> None:
    src = "{{ if .System }}S={{ .System }}{{ else }}none{{ end }}"
    assert render(src, {"System": ""}) == "none"
    assert render(src, {"System": "x"}) == "S=x"


def test_range_else_and_root_access() -> None:
    src = "{{ range .Messages }}{{ $.System }}/{{ .Role }} {{ else }}empty{{ end }}"
    assert render(src, MSGS) == "sys/user sys/assistant "
    assert render(src, {"System": "s", "Messages": []}) == "empty"


def test_functions_and_parens() -> None:
    src = (
        '{{ range .Messages }}{{ if and (ne .Role "system") (not (eq .Content "")) }}'
        "{{ .Role }};{{ end }}{{ end }}"
    )
    data = {
        "Messages": [
            {"Role": "system", "Content": "x"},
            {"Role": "user", "Content": ""},
            {"Role": "user", "Content": "q"},
        ]
    }
    assert render(src, data) == "user;"
    assert render("{{ len .Messages }}", MSGS) == "2"
    assert render("{{ (index .Messages 1).Role }}", MSGS) == "assistant"


def test_with_changes_dot() -> None:
    assert render("{{ with .A }}<{{ .B }}>{{ else }}no{{ end }}", {"A": {"B": "x"}}) == "<x>"
    assert render("{{ with .A }}<{{ .B }}>{{ else }}no{{ end }}", {"A": None}) == "no"


def test_comments_are_dropped() -> None:
    assert render("a{{/* note */}}b", {}) == "ab"


@pytest.mark.parametrize(
    "src",
    [
        "{{ if .X }}never closed",
        "{{ end }}",
        "{{ $x := .A }}{{ $x }}",
        "{{ .A | printf }}",
        '{{ template "x" }}',
        "{{ .Missing }}",
        "{{ .A",
    ],
)
def test_unsupported_or_malformed_templates_raise(src: str) -> None:
    with pytest.raises(TemplateSyntaxError):
        render(src, {"A": "a", "X": True})


def test_truthiness_follows_go() -> None:
    assert [truthy(v) for v in ("", "a", 0, 1, [], [0], None, False, {}, {"a": 1})] == [
        False,
        True,
        False,
        True,
        False,
        True,
        False,
        False,
        False,
        True,
    ]
