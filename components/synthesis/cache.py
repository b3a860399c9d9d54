"""On-disk reply cache keyed by (prompt version, model, product uid).

Every teacher reply is written here (atomically) before it is parsed or used, so a run that is
killed resumes where it stopped and a rerun makes no calls for products already answered. One
small JSON file per product keeps writes independent across concurrent workers. An entry also
records a hash of the product text it was asked about: if the text changes, the entry is stale.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.common.atomic import atomic_open

_SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


def _slug(text: str) -> str:
    """A file-name-safe, collision-free name for a model id or uid."""
    if _SAFE.match(text) and not text.startswith("."):
        return text
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:60].strip("._") + "-" + digest


def input_hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


@dataclass
class CachedReply:
    content: str
    usage: dict[str, int] = field(default_factory=dict)
    finish_reason: str | None = None


@dataclass
class CacheEntry:
    uid: str
    input_sha: str
    replies: list[CachedReply] = field(default_factory=list)


class ReplyCache:
    def __init__(self, root: str | Path, prompt_version: str, model: str) -> None:
        self.dir = Path(root) / _slug(prompt_version) / _slug(model)
        self.prompt_version = prompt_version
        self.model = model

    def path(self, uid: str) -> Path:
        return self.dir / f"{_slug(uid)}.json"

    def load(self, uid: str, input_sha: str) -> CacheEntry:
        """The cached replies for `uid`, or an empty entry if none or if the product text changed."""
        path = self.path(uid)
        empty = CacheEntry(uid=uid, input_sha=input_sha)
        if not path.is_file():
            return empty
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return empty  # unreadable entry: ask again rather than fail the run
        if data.get("uid") != uid or data.get("input_sha") != input_sha:
            return empty
        replies = [CachedReply(**r) for r in data.get("replies", [])]
        return CacheEntry(uid=uid, input_sha=input_sha, replies=replies)

    def append(self, entry: CacheEntry, reply: CachedReply) -> None:
        """Add a reply to the entry and persist it before the caller looks at the reply."""
        entry.replies.append(reply)
        doc: dict[str, Any] = {
            "uid": entry.uid,
            "prompt_version": self.prompt_version,
            "model": self.model,
            "input_sha": entry.input_sha,
            "updated": time.time(),
            "replies": [r.__dict__ for r in entry.replies],
        }
        with atomic_open(self.path(entry.uid), "w", encoding="utf-8") as fh:
            json.dump(doc, fh, ensure_ascii=False)
