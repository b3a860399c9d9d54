"""clean_text / clean_title: entities, markup, whitespace, control characters, and the guarantee."""

from __future__ import annotations

import html
import itertools
import random
import re

import pytest

from components.prep.clean import clean_text, clean_title

TAG = re.compile(r"<[A-Za-z/!?][^<>]*>")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Girls Ballet Tutu Neon Pink", "Girls Ballet Tutu Neon Pink"),
        ("Kid&#8217;s Tutu &#8211; Pink", "Kid’s Tutu – Pink"),
        ("Salt &amp; Pepper &quot;Set&quot;", 'Salt & Pepper "Set"'),
        ("&#x2019;hex&#X27;", "’hex'"),
        # double escaping
        ("&amp;quot;Best&amp;quot; &amp;#8217;", '"Best" ’'),
        ("&amp;amp;lt;b&amp;amp;gt;bold", "bold"),
        # entity-escaped markup is markup
        ("one&lt;br&gt;two&lt;br/&gt;three", "one\ntwo\nthree"),
        # real markup: block tags -> line breaks, inline tags vanish
        ("<p>First <b>bold</b> para.</p><p>Second.</p>", "First bold para.\nSecond."),
        ("<ul><li>a</li><li>b</li></ul>", "a\nb"),
        ("line<br>break<BR/>again", "line\nbreak\nagain"),
        ('<p class="x">attrs <a href="https://x.y/?a=1&amp;b=2">link</a></p>', "attrs link"),
        ("<!-- comment -->text<script>var a = '<b>';</script><style>p{}</style>", "text"),
        ('<span title="a>b">t</span>', "t"),
        ("<img src='a.jpg' alt=\"x > y\">Nice<hr/>Next <FONT color=red>red</FONT>", "Nice\nNext red"),
        ("<pre>keep <tt>me</tt></pre><custom-tag x=1>too</custom-tag>", "keep me\ntoo"),
        ('<a title="say &quot;hi&quot;" href=x>link</a> text', "link text"),
        # odd nesting that leaves tag-shaped text after one parse
        ("<<b>b>x", "x"),
        # whitespace
        ("  many   spaces\there  ", "many spaces here"),
        ("a\u00a0b\u3000c", "a b c"),
        ("para one\r\n\r\n\r\n   para two  ", "para one\npara two"),
        ("<p> </p><br>   <div>&nbsp;</div>", ""),
        # control characters go, emoji sequences (ZWJ) stay
        ("bell\x07 null\x00 del\x7f c1\x85 end", "bell null del c1 end"),
        ("family 👨\u200d👩\u200d👧 ok", "family 👨\u200d👩\u200d👧 ok"),
        # unicode survives untouched
        ("Café crème 日本製 儿童 🎁", "Café crème 日本製 儿童 🎁"),
        # not markup, not entities: literal text stays
        ("5 < 6 and 7 > 3", "5 < 6 and 7 > 3"),
        ("AT&T; R&D & more", "AT&T; R&D & more"),
        ("<3 love it", "<3 love it"),
        # escaped more times than the bound: residue is deleted, never left as an entity
        ("&amp;amp;amp;amp;amp;amp;quot;", "amp;quot;"),
        ("", ""),
    ],
)
def test_clean_text_cases(raw: str, expected: str) -> None:
    assert clean_text(raw) == expected


def test_none_is_empty() -> None:
    assert clean_text(None) == ""
    assert clean_title(None) == ""


def test_title_is_one_line() -> None:
    assert clean_title("Tutu<br>Pink\nSize&nbsp;M") == "Tutu Pink Size M"
    assert clean_text("Tutu<br>Pink") == "Tutu\nPink"


def test_plain_text_is_returned_unchanged() -> None:
    s = "High quality 3 layer ballet tutu. 12 inches in length"
    assert clean_text(s) is s  # the fast path does no work on clean text


def _assert_guarantee(raw: str, out: str) -> None:
    assert html.unescape(out) == out, f"entity left in {out!r} (from {raw!r})"
    assert not TAG.search(out), f"tag left in {out!r} (from {raw!r})"
    assert out == out.strip(), (raw, out)
    for line in out.split("\n") if out else []:
        assert line and "  " not in line and line == line.strip(), (raw, out)
        assert all(ch.isprintable() or ch == "\u200d" for ch in line.replace(" ", "")), (raw, out)


# Fragments that combine into entities, tags, comments, escapes and whitespace in every order.
FRAGMENTS = [
    "&", "#", "amp", "lt", "gt", ";", "<", ">", "b", "/", "p", "br", "x", "1", "82", "17", "quot",
    " ", "\n", "!--", "--", "a", "\x01", "é", "nbsp", "#x27", "li", "script", '"', "=", "span", "\u00a0",
    "\t", "&#8217;", "&lt;", "&amp;", "<b>", "</p>", "日",
]  # fmt: skip


# The fragments that build entities and tags, for exhaustive triples.
CORE = ["&", "#", "amp", "lt", ";", "<", ">", "b", "/", "p", "1", "!--", " ", "\n", "&lt;", "&amp;", "<b>"]


@pytest.mark.parametrize(("fragments", "repeat"), [(FRAGMENTS, 2), (CORE, 3)])
def test_guarantee_on_all_short_combinations(fragments: list[str], repeat: int) -> None:
    # Exhaustive: every ordered pair of all fragments, every ordered triple of the core ones.
    for parts in itertools.product(fragments, repeat=repeat):
        raw = "".join(parts)
        _assert_guarantee(raw, clean_text(raw))
        _assert_guarantee(raw, clean_title(raw))


def test_guarantee_on_random_long_combinations() -> None:
    rng = random.Random(1234)
    for _ in range(3000):
        raw = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(4, 30)))
        _assert_guarantee(raw, clean_text(raw))
        assert "\n" not in clean_title(raw)
