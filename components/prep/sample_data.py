"""Synthetic `trn.json` (AmazonTitles-1.3MM format) with the real file's shapes and damage.

`generate_trn(path, lines, seed)` writes JSON lines `{"uid", "title", "content", "target_ind",
"target_rel"}` (gzip when `path` ends in `.gz`), deterministic by seed. Lines are assembled from
pools of pre-serialised pieces (titles, descriptions, label lists), so the full 2,248,619-line file
takes about a minute: no per-row faker calls, no per-row json.dumps.

Rates follow the real file: ~36% empty content, ~10% short content, entities in ~15% of
descriptions and ~5% of titles, markup in ~3%, double escaping, entity-escaped markup, accents, CJK
and emoji, uids with leading zeros, ~2% duplicate (title, content) pairs, null/missing fields, and
rare damage: a line that is not an object, invalid UTF-8 bytes, a garbled line, a blank line and a
truncated last line. Every kind in `EDGE_KINDS` appears at least once when `lines >= MIN_LINES_ALL_KINDS`
(rare kinds are also planted at random positions), so small test files exercise all of them.
"""

from __future__ import annotations

import bisect
import functools
import gzip
import html
import itertools
import random
from collections import Counter
from pathlib import Path

import numpy as np
import orjson

from components.prep.sample_catalogue import filler_tail, make_product

# Content kinds and their probability per line (the rest of the probability mass is "long").
CONTENT_RATES: dict[str, float] = {
    "empty_content": 0.36,
    "short_content": 0.10,
    "null_content": 0.004,
    "missing_content": 0.0005,
    "markup_only_content": 0.004,
    "entity_content": 0.15,
    "markup_content": 0.03,
    "double_escaped_content": 0.01,
    "escaped_markup_content": 0.005,
    "control_char_content": 0.001,
}
TITLE_RATES: dict[str, float] = {
    "entity_title": 0.05,
    "double_escaped_title": 0.002,
    "markup_title": 0.002,
    "null_title": 0.001,
    "missing_title": 0.0005,
    "empty_title": 0.001,
    "number_title": 0.0002,
}
UID_RATES: dict[str, float] = {"missing_uid": 0.0002, "null_uid": 0.0002, "int_uid": 0.0001}
LINE_RATES: dict[str, float] = {
    "duplicate": 0.02,
    "not_an_object": 0.00001,
    "invalid_utf8": 0.00002,
    "invalid_json": 0.00001,
    "blank_line": 0.00001,
}
EDGE_KINDS: tuple[str, ...] = (
    *CONTENT_RATES,
    *TITLE_RATES,
    *UID_RATES,
    *LINE_RATES,
    "long_content",
    "unicode",
    "leading_zero_uid",
    "truncated_last_line",
)
MIN_LINES_ALL_KINDS = 200
# Bump when the output for a given seed changes (the benchmark caches generated files by it).
GENERATOR_VERSION = 3  # 3: coherent products (sample_catalogue.py)
N_PRODUCTS = 20_000
N_TAILS = 1_000
_RARE_LINE = {k: v for k, v in LINE_RATES.items() if k != "duplicate"}
_PLANTED = (*CONTENT_RATES, *TITLE_RATES, *UID_RATES, *LINE_RATES)

_ENTITY_MAP = {"'": "&#8217;", "-": "&#8211;", "&": "&amp;", '"': "&quot;", "–": "&#8211;"}


def _entities(s: str) -> str:
    # & first so the entities we add are not escaped again.
    s = s.replace("&", "&amp;")
    for ch, ent in _ENTITY_MAP.items():
        if ch != "&":
            s = s.replace(ch, ent)
    return s


def _markup(rng: random.Random, text: str) -> str:
    sentences = text.split(". ")
    style = rng.randrange(4)
    if style == 0:
        return "<br>".join(sentences) + "<br/>"
    if style == 1:
        return "".join(f"<p><b>{s}</b></p>" if i == 0 else f"<p>{s}</p>" for i, s in enumerate(sentences))
    if style == 2:
        return "<ul>" + "".join(f"<li>{s}</li>" for s in sentences) + "</ul><!-- x -->"
    # Tags with attributes (what seller-pasted HTML looks like): these need a real parser.
    first, *rest = sentences
    body = "".join(f'<p class="a-spacing-small">{s}</p>' for s in rest)
    return f'<span style="font-weight:bold">{first}</span>{body}<a href="https://example.com/?a=1&amp;b=2">more</a>'


def _dumps(obj: object) -> bytes:
    return orjson.dumps(obj)


class _Pools:
    """Pre-serialised JSON fragments, all built from `seed`.

    Product `p` owns a title and two phrasings of its facts; a long description is one phrasing
    plus one of `N_TAILS` filler tails of its language, joined at line time as raw JSON string
    bodies (no per-row json.dumps). 20,000 products x 2 x 1,000 tails keep accidental duplicates
    rare at full size; the planted ~2% duplicates come from `_LineMaker.recent`. The transformed
    kinds (entities, markup, ...) are pre-rendered for the first products only, as before."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        products = [make_product(rng) for _ in range(N_PRODUCTS)]
        self.title_text = [p.title for p in products]
        self.title = [_dumps(p.title) for p in products]
        self.lang = [p.lang for p in products]
        self.facts = [tuple(_dumps(f)[1:-1] for f in p.facts) for p in products]
        self.tails = {
            lang: [_dumps(filler_tail(rng, lang))[1:-1] for _ in range(N_TAILS)] for lang in ("en", "pt")
        }
        self.short = [_dumps(p.short) for p in products]
        full = [p.facts[i % 2] + filler_tail(rng, p.lang) for i, p in enumerate(products[:3_000])]
        self.entity = [_dumps(_entities(c)) for c in full]
        self.markup = [_dumps(_markup(rng, _entities(c) if i % 2 else c)) for i, c in enumerate(full[:2_000])]
        self.double_escaped = [_dumps(html.escape(_entities(c + ' "Top rated"'))) for c in full[:500]]
        self.escaped_markup = [_dumps(html.escape(_markup(rng, c))) for c in full[:500]]
        self.control = [
            _dumps(c[:60] + "\x07\t\u0000" + c[60:] + "\n\nSecond paragraph.") for c in full[:200]
        ]
        self.markup_only = [
            _dumps(s) for s in ("<br>", "<p></p>", "   ", "<br/><br/>", "&nbsp;", "<div> </div>")
        ]
        # Label lists: real ones average ~20 labels; short-ish lists keep the size realistic.
        self.targets: list[bytes] = []
        for _ in range(2_000):
            k = min(1 + int(rng.expovariate(1 / 12)), 60)
            ind = sorted(rng.sample(range(2_812_281), k))
            rel = [1.0] * k
            self.targets.append(b', "target_ind": ' + _dumps(ind) + b', "target_rel": ' + _dumps(rel))

    def long(self, p: int, r: float) -> bytes:
        """Product p's description: a phrasing and a filler tail, both picked by r."""
        v = int(r * 2 * N_TAILS)
        return b'"' + self.facts[p][v % 2] + self.tails[self.lang[p]][v // 2] + b'"'


class _Picker:
    """Maps a uniform float to a kind by cumulative rates (bisect is C; this runs per line)."""

    def __init__(self, rates: dict[str, float], default: str) -> None:
        self.kinds = [*rates, default]
        self.edges = list(itertools.accumulate(rates.values()))

    def __call__(self, u: float) -> str:
        return self.kinds[bisect.bisect_right(self.edges, u)]


@functools.lru_cache(maxsize=2)
def _pools(seed: int) -> _Pools:
    return _Pools(seed)  # ~1 s to build; tests generate several small files with one seed


class _LineMaker:
    def __init__(self, seed: int, lines: int, damage: bool = True) -> None:
        self.pools = p = _pools(seed)
        self.damage = damage
        self.rng = np.random.default_rng(seed)
        self.recent: list[tuple[bytes, bytes]] = []
        self.counts: Counter[str] = Counter()
        # Plant each rare kind once at a random position (not the last line, which is truncated).
        prng = random.Random(seed + 1)
        candidates = range(max(lines - 1, 0))
        planted = _PLANTED if damage else tuple(k for k in _PLANTED if k not in _RARE_LINE)
        positions = prng.sample(candidates, min(len(planted), len(candidates)))
        self.planted = dict(zip(positions, planted, strict=False))
        # Fixed JSON bytes per kind (b"" = key absent); the other kinds are rendered from product p.
        self.fixed_titles = {
            "null_title": b"null",
            "missing_title": b"",
            "empty_title": b'""',
            "number_title": b"12345",
        }
        self.fixed_contents = {"empty_content": b'""', "null_content": b"null", "missing_content": b""}
        # How many products a content kind can draw from (the transformed ones are pre-rendered).
        self.products_for = {
            "entity_content": len(p.entity),
            "markup_content": len(p.markup),
            "double_escaped_content": len(p.double_escaped),
            "escaped_markup_content": len(p.escaped_markup),
            "control_char_content": len(p.control),
        }
        self.pick_rare = _Picker(_RARE_LINE, "")
        self.pick_uid = _Picker(UID_RATES, "uid")
        self.pick_title = _Picker(TITLE_RATES, "title")
        self.pick_content = _Picker(CONTENT_RATES, "long_content")

    def _title(self, kind: str, p: int) -> bytes:
        if kind in self.fixed_titles:
            return self.fixed_titles[kind]
        if kind == "title":
            return self.pools.title[p]
        text = self.pools.title_text[p]
        if kind == "entity_title":
            escaped = _entities(text)
            return _dumps(escaped if escaped != text else _entities(text.replace(" ", " - ", 1)))
        if kind == "double_escaped_title":
            return _dumps(html.escape(_entities(text + ' "Top"')))
        return _dumps(f"<b>{text}</b> &amp; More")  # markup_title

    def _content(self, kind: str, p: int, r: float) -> bytes:
        if kind in self.fixed_contents:
            return self.fixed_contents[kind]
        pools = self.pools
        if kind == "long_content":
            return pools.long(p, r)
        if kind == "short_content":
            return pools.short[p]
        if kind == "markup_only_content":
            return pools.markup_only[int(r * len(pools.markup_only))]
        pool = {"entity_content": pools.entity, "markup_content": pools.markup,
                "double_escaped_content": pools.double_escaped, "escaped_markup_content": pools.escaped_markup,
                "control_char_content": pools.control}[kind]  # fmt: skip
        return pool[p]

    @staticmethod
    def _take(source: list[bytes] | bytes, r: float) -> bytes:
        return source if isinstance(source, bytes) else source[int(r * len(source))]

    def make(self, i: int, u: list[float]) -> bytes:
        """Line i (without newline); u holds 8 uniform floats for this line."""
        forced = self.planted.get(i)
        rare = forced if forced in _RARE_LINE else (self.pick_rare(u[0]) if forced is None else "")
        if rare and not self.damage:
            rare = ""
        if rare:
            self.counts[rare] += 1
            return self._special(rare, i, u)
        uid_kind = forced if forced in UID_RATES else self.pick_uid(u[2])
        title_kind = forced if forced in TITLE_RATES else self.pick_title(u[3])
        content_kind = forced if forced in CONTENT_RATES else self.pick_content(u[4])

        if uid_kind == "uid":
            if u[5] < 0.7:
                uid = b'"%010d"' % (i * 7 + 31909)
                self.counts["leading_zero_uid"] += 1
            else:
                uid = b'"B%09d"' % (i * 13 + 100003)
        else:
            uid = {"null_uid": b"null", "int_uid": b"%d" % (i + 31909), "missing_uid": b""}[uid_kind]
        # One product per line: the title and the description state the same facts.
        p = int(u[6] * self.products_for.get(content_kind, N_PRODUCTS))
        title = self._title(title_kind, p)
        content = self._content(content_kind, p, u[7])

        dup = forced == "duplicate" or (forced is None and u[1] < LINE_RATES["duplicate"])
        if dup and self.recent:
            title, content = self.recent[int(u[5] * len(self.recent))]
            self.counts["duplicate"] += 1
        else:
            self.counts[uid_kind] += 1
            self.counts[title_kind] += 1
            self.counts[content_kind] += 1
            if (
                title_kind == "title"
                and content_kind == "long_content"
                and (len(self.recent) < 10 or u[1] > 0.99)
            ):
                self.recent.append((title, content))
                if len(self.recent) > 1000:
                    self.recent.pop(0)
        if not (title.isascii() and content.isascii()):
            self.counts["unicode"] += 1
        return self._assemble(uid, title, content, self._take(self.pools.targets, u[5]))

    @staticmethod
    def _assemble(uid: bytes, title: bytes, content: bytes, targets: bytes) -> bytes:
        parts = []
        if uid:
            parts.append(b'"uid": ' + uid)
        if title:
            parts.append(b'"title": ' + title)
        if content:
            parts.append(b'"content": ' + content)
        return b"{" + b", ".join(parts) + targets + b"}"

    def _special(self, kind: str, i: int, u: list[float]) -> bytes:
        if kind == "not_an_object":
            return [b"[1, 2, 3]", b'"just a string"', b"null", b"42"][int(u[2] * 4)]
        if kind == "blank_line":
            return b""
        p = int(u[7] * 100)
        good = self._assemble(
            b'"%010d"' % i, self.pools.title[p], self.pools.long(p, u[6]), self.pools.targets[0]
        )
        if kind == "invalid_utf8":
            cut = good.index(b'"content": ') + 20
            return good[:cut] + b"\xff\xfe\xc3" + good[cut:]
        return good[: len(good) // 2] + b" garbled"  # invalid_json


def generate_trn(path: str | Path, lines: int, seed: int = 0, *, damage: bool = True) -> Counter[str]:
    """Write `lines` lines of trn.json-format data to `path`; return how many of each kind it wrote.

    Gzip when the path ends in `.gz` (mtime 0, so the bytes are deterministic too). `damage=False`
    leaves out the damaged lines (not an object, invalid UTF-8, garbled, blank, truncated last line)
    but keeps every content edge case: the benchmark's baseline (pandas.read_json) cannot read damage.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    maker = _LineMaker(seed, lines, damage)
    raw = open(path, "wb")  # noqa: SIM115 - closed below, possibly through GzipFile
    out = (
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=1, mtime=0)
        if path.suffix == ".gz"
        else raw
    )
    try:
        chunk = 100_000
        for start in range(0, lines, chunk):
            n = min(chunk, lines - start)
            uniform = maker.rng.random((n, 8)).tolist()
            batch = [maker.make(start + j, uniform[j]) for j in range(n)]
            last = start + n == lines
            if last and damage and lines > 1:
                # The real file's last line is sometimes cut off mid-object, without a newline.
                batch[-1] = batch[-1][: max(len(batch[-1]) * 2 // 3, 1)]
                maker.counts["truncated_last_line"] += 1
                out.write(b"\n".join(batch))
            else:
                out.write(b"\n".join(batch) + b"\n")
    finally:
        if out is not raw:
            out.close()
        raw.close()
    return maker.counts
