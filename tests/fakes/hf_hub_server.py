"""A local stand-in for the Hugging Face Hub's download API, for `huggingface_hub.snapshot_download`.

It answers the calls huggingface_hub 2.x makes (read from its source, `_snapshot_download.py`,
`hf_api.py`, `file_download.py`, `utils/_http.py`):

- `GET /api/models/{repo}/revision/{rev}`: repo info with the resolved commit `sha`;
- `GET /api/models/{repo}/tree/{commit}?recursive=True`: the file list (git blob oid, size, LFS sha256);
- `HEAD|GET /{repo}/resolve/{commit}/{path}`: file metadata (`X-Repo-Commit`, `ETag`) and bytes.

Errors carry the Hub's headers, which huggingface_hub maps to its exception types: unknown repo
`401 X-Error-Code: RepoNotFound`, unknown revision `404 X-Error-Code: RevisionNotFound`, gated repo
without a token `401 X-Error-Code: GatedRepo`, wrong token `401 X-Error-Message: Invalid credentials
in Authorization header`. Requests are recorded in `server.log` (method, path, had-token).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


@dataclass
class FakeRepo:
    files: dict[str, bytes]
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    refs: dict[str, str] = field(default_factory=dict)  # branch/tag -> commit
    gated: bool = False  # needs a valid token

    def __post_init__(self) -> None:
        self.refs.setdefault("main", self.commit)


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """`with FakeHub(repos, token="hf_good") as hub:` then `HF_ENDPOINT=hub.url`."""

    def __init__(self, repos: dict[str, FakeRepo], token: str | None = None) -> None:
        self.repos, self.token = repos, token
        self.log: list[tuple[str, str, bool]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet test output
                pass

            def do_GET(self) -> None:
                hub._handle(self, body=True)

            def do_HEAD(self) -> None:
                hub._handle(self, body=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- routing ---------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlparse(h.path).path)
        auth = h.headers.get("Authorization", "")
        self.log.append((h.command, path, bool(auth)))
        if path.startswith("/api/models/"):
            rest = path[len("/api/models/") :]
            for kind in ("/revision/", "/tree/"):
                if kind in rest:
                    repo_id, rev = rest.split(kind, 1)
                    return self._api(h, repo_id, rev.rstrip("/"), kind.strip("/"), auth, body)
            return self._send(h, 404, {}, b"", body)
        if "/resolve/" in path:
            repo_id, rest = path.lstrip("/").split("/resolve/", 1)
            rev, _, filename = rest.partition("/")
            return self._file(h, repo_id, rev, filename, auth, body)
        return self._send(h, 404, {}, b"", body)

    def _check(self, h: BaseHTTPRequestHandler, repo_id: str, rev: str, auth: str, body: bool):
        repo = self.repos.get(repo_id)
        if auth and self.token is not None and auth != f"Bearer {self.token}":
            self._send(h, 401, {"X-Error-Message": "Invalid credentials in Authorization header"}, b"", body)
            return None
        if repo is None:
            self._send(h, 401 if not auth else 404, {"X-Error-Code": "RepoNotFound"}, b"", body)
            return None
        if repo.gated and not auth:
            self._send(h, 401, {"X-Error-Code": "GatedRepo"}, b"", body)
            return None
        commit = repo.refs.get(rev, rev if rev == repo.commit else None)
        if commit is None:
            self._send(h, 404, {"X-Error-Code": "RevisionNotFound"}, b"", body)
            return None
        return repo, commit

    def _api(self, h, repo_id: str, rev: str, kind: str, auth: str, body: bool) -> None:
        found = self._check(h, repo_id, rev, auth, body)
        if found is None:
            return
        repo, commit = found
        if kind == "revision":
            info = {
                "id": repo_id,
                "modelId": repo_id,
                "sha": commit,
                "private": False,
                "gated": repo.gated,
                "siblings": [{"rfilename": name} for name in sorted(repo.files)],
            }
            return self._send(h, 200, {"Content-Type": "application/json"}, json.dumps(info).encode(), body)
        tree = []
        for name, data in sorted(repo.files.items()):
            entry = {"type": "file", "oid": git_blob_oid(data), "size": len(data), "path": name}
            if name.endswith(".safetensors"):
                entry["lfs"] = {
                    "oid": hashlib.sha256(data).hexdigest(),
                    "size": len(data),
                    "pointerSize": 134,
                }
            tree.append(entry)
        self._send(h, 200, {"Content-Type": "application/json"}, json.dumps(tree).encode(), body)

    def _file(self, h, repo_id: str, rev: str, filename: str, auth: str, body: bool) -> None:
        found = self._check(h, repo_id, rev, auth, body)
        if found is None:
            return
        repo, commit = found
        data = repo.files.get(filename)
        if data is None:
            return self._send(h, 404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}, b"", body)
        lfs = filename.endswith(".safetensors")
        etag = hashlib.sha256(data).hexdigest() if lfs else git_blob_oid(data)
        headers = {
            "X-Repo-Commit": commit,
            "ETag": f'"{etag}"',
            "Content-Type": "application/octet-stream",
        }
        if lfs:
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(data))})
        self._send(h, 200, headers, data, body)

    @staticmethod
    def _send(
        h: BaseHTTPRequestHandler, status: int, headers: dict[str, str], data: bytes, body: bool
    ) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if body and data:
            h.wfile.write(data)
