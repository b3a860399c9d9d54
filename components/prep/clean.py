"""Text cleaning for product titles and descriptions.

`clean_text(s)` turns raw catalogue text into plain text:

1. drop control characters (C0 except tab/newline/CR, DEL, C1);
2. unescape HTML entities repeatedly (at most `MAX_UNESCAPE_ROUNDS` rounds), so double-escaped text
   such as `&amp;quot;` and entity-escaped markup such as `&lt;br&gt;` become `"` and `<br>`;
   whatever still decodes after that bound is deleted (text escaped five times over is garbage);
3. strip markup, only when the text contains something tag-like (a cheap `'<' in s` + regex test
   first): common block tags (`<br>`, `<p>`, `<li>`, `<div>`, headings, list/table tags) become line
   breaks, common inline tags (`<b>`, `<span style=..>`, `<a href=..>`, ...) and complete comments
   vanish, by regexes that follow HTML's attribute grammar; BeautifulSoup (html.parser) removes
   whatever markup is left (`<script>`/`<style>` bodies, other tags, malformed markup). BeautifulSoup
   costs 0.1-0.7 ms a call here, so plain text and common markup never reach it;
4. normalise whitespace: runs of spaces/tabs (and any other Unicode space) collapse to one space,
   every line is stripped and empty lines are dropped.

Line breaks: `clean_text(s)` (descriptions) keeps a single `\\n` between paragraphs and list items,
so the describer learns readable descriptions; `clean_title(s)` (titles) joins everything into one line.

Guarantee (tested exhaustively in tests/unit/test_prep_clean.py): the result contains no `<tag>` and
nothing `html.unescape` would decode (`&#8217;`, `&#x2019;`, `&amp;`, `&quot`, ...), i.e.
`html.unescape(out) == out`. A literal `&` that is no entity (`AT&T`, `R&D;`) is text and stays.
"""

from __future__ import annotations

import html
import re
import warnings

MAX_UNESCAPE_ROUNDS = 4

# C0 controls except \t \n \r, DEL and C1 controls. Zero-width joiners (category Cf) stay: emoji need them.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# The same pattern html.unescape uses, so "decodable" means exactly what it decodes.
_ENTITY_LIKE = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")
# Something an HTML parser would treat as a tag, comment, doctype or processing instruction.
_TAG_LIKE = re.compile(r"<[A-Za-z/!?]")
_TAG = re.compile(r"<[A-Za-z/!?][^<>]*>")
# Common tags are removed by regex: block tags become line breaks, inline tags vanish. The attribute
# grammar is HTML's (quoted values may hold `>`), so these matches are exactly the tags a parser sees.
# Anything else tag-like (script/style, other tags, malformed markup) goes to BeautifulSoup.
_ATTRS = r"""(?:\s+[^\s"'>/=]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'=<>`]+))?)*\s*/?"""
_BLOCK_TAG = re.compile(
    rf"</?(?:br|p|li|div|tr|h[1-6]|hr|pre|ul|ol|dl|dt|dd|table|tbody|blockquote){_ATTRS}>", re.I
)
_INLINE_TAG = re.compile(
    rf"</?(?:b|i|u|s|em|strong|span|font|small|big|sup|sub|center|a|img|strike|code|mark|abbr|cite){_ATTRS}>",
    re.I,
)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_CR = re.compile(r"\r\n?")


def _delete_entities(s: str) -> str:
    """Remove every decodable entity; repeat because a deletion can join a new one (`&am&lt;p;`)."""
    while True:
        out = _ENTITY_LIKE.sub(lambda m: "" if html.unescape(m.group(0)) != m.group(0) else m.group(0), s)
        if out == s:
            return out
        s = out


def _unescape(s: str) -> str:
    for _ in range(MAX_UNESCAPE_ROUNDS):
        if "&" not in s:
            return s
        unescaped = html.unescape(s)
        if unescaped == s:
            return s
        s = unescaped
    return _delete_entities(s) if "&" in s else s


def _soup_text(s: str) -> str:
    # Imported lazily: most processes that import this module never see inline markup.
    from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning

    with warnings.catch_warnings():
        # "looks like a URL/filename" warnings are noise for product text.
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        # get_text() skips comments and <script>/<style> bodies.
        return BeautifulSoup(s, "html.parser").get_text()


def _strip_markup(s: str) -> str:
    s = _INLINE_TAG.sub("", _BLOCK_TAG.sub("\n", s))
    if "<!--" in s:
        s = _COMMENT.sub("", s)
    if _TAG_LIKE.search(s):
        s = _soup_text(s)
    return s


def _to_plain(s: str) -> str:
    """Unescape and strip until nothing changes (bounded), then enforce the guarantee."""
    if "&" in s:
        s = _unescape(s)  # now html.unescape(s) == s
    if "<" not in s or not _TAG_LIKE.search(s):
        return s  # the common case: entities only
    for _ in range(3):
        before = s
        s = _strip_markup(s)
        if "&" in s:
            s = _unescape(s)
        if s == before or "<" not in s or not _TAG_LIKE.search(s):
            break
    if "<" not in s or not _TAG.search(s):
        return s
    # Backstop for adversarial nestings (`<<b>b>`, `&l<i></i>t;b>`, `<!-->`): each pass only shortens s.
    while True:
        out = _TAG.sub(" ", s) if "<" in s else s
        if "&" in out:
            out = _delete_entities(out)
        if out == s:
            return out
        s = out


def _normalise_whitespace(s: str, multiline: bool) -> str:
    if not multiline or ("\n" not in s and "\r" not in s):
        return " ".join(s.split())
    lines = (" ".join(line.split()) for line in _CR.sub("\n", s).split("\n"))
    return "\n".join(line for line in lines if line)


def clean_text(s: str | None, multiline: bool = True) -> str:
    """Plain text from raw catalogue text (see the module docstring for the rules)."""
    if not s:
        return ""
    if s.isprintable():
        # Fast path for most rows. isprintable() is False for controls, tabs, newlines and every
        # Unicode space except " ", so printable plain text only needs its spaces checked.
        if "&" not in s and "<" not in s:
            if "  " not in s and s[0] != " " and s[-1] != " ":
                return s
            return " ".join(s.split())
    else:
        s = _CONTROL.sub("", s)
    if "&" in s or "<" in s:
        s = _to_plain(s)
        if s.isprintable() and "  " not in s and s[:1] != " " and s[-1:] != " ":
            return s  # nothing to normalise (the check is cheaper than split/join)
    return _normalise_whitespace(s, multiline)


def clean_title(s: str | None) -> str:
    """A title is one line."""
    return clean_text(s, multiline=False)
