"""A KFP v2beta1 API server on 127.0.0.1 for `prodtune submit` tests: real HTTP, real multipart.

It keeps what a KFP API server keeps (pipelines, versions, experiments, runs) and refuses what one
refuses: no or wrong bearer token (401/403, as the auth proxy in front of KFP answers), a missing
namespace in multi-user mode, a version name used twice (409), a file that is not a pipeline spec
(400, "Failed to read a pipeline spec file"), run parameters the version does not declare or lacks,
unknown ids (404). Lists are paged two items at a time so clients must follow next_page_token.
Shapes follow backend/api/v2beta1/*.proto with proto field names (`UseProtoNames`).
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

API = "/apis/v2beta1"
PAGE = 2


@dataclass
class KfpState:
    token: str | None = None  # required bearer token; None: no auth
    multi_user: bool = False
    pipelines: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    specs: dict[str, dict[str, Any]] = field(default_factory=dict)  # version id -> pipeline spec
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path without query)


class _Refusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status, self.message = status, message


def _page(items: list[dict[str, Any]], key: str, query: dict[str, str]) -> dict[str, Any]:
    start = int(query.get("page_token") or 0)
    size = min(int(query.get("page_size") or PAGE), PAGE)
    body: dict[str, Any] = {key: items[start : start + size], "total_size": len(items)}
    if start + size < len(items):
        body["next_page_token"] = str(start + size)
    return body


class _Handler(BaseHTTPRequestHandler):
    state: KfpState

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self, method: str) -> None:
        url = urlparse(self.path)
        self.state.requests.append((method, url.path))
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        try:
            self._auth()
            if not url.path.startswith(API + "/"):
                raise _Refusal(404, "Not Found")
            body = getattr(self, f"_{method.lower()}")(url.path[len(API) :], query)
        except _Refusal as exc:
            self._send(exc.status, {"error_message": exc.message, "code": exc.status})
            return
        self._send(200, body)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _auth(self) -> None:
        if self.state.token is None:
            return
        header = self.headers.get("Authorization", "")
        if not header:
            raise _Refusal(401, "Unauthorized: no bearer token")
        if header != f"Bearer {self.state.token}":
            raise _Refusal(403, "Forbidden: token not accepted")

    def _namespace(self, value: str | None) -> str:
        if self.state.multi_user and not value:
            raise _Refusal(400, "Invalid input error: namespace is required in multi-user mode")
        return value or ""

    def _json(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length", 0))
        return json.loads(self.rfile.read(length) or b"{}")

    # --- GET -------------------------------------------------------------------------------

    def _get(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        parts = path.strip("/").split("/")
        if parts[:2] == ["pipelines", "names"] and len(parts) == 3:
            ns = self._namespace(query.get("namespace"))
            for p in self.state.pipelines.values():
                if p["name"] == parts[2] and p["namespace"] == ns:
                    return p
            raise _Refusal(404, f"Pipeline {parts[2]} not found")
        if parts[0] == "pipelines" and len(parts) == 3 and parts[2] == "versions":
            if parts[1] not in self.state.pipelines:
                raise _Refusal(404, f"Pipeline {parts[1]} not found")
            return _page(self.state.versions[parts[1]], "pipeline_versions", query)
        if parts == ["experiments"]:
            ns = self._namespace(query.get("namespace"))
            items = [e for e in self.state.experiments.values() if e["namespace"] == ns]
            return _page(items, "experiments", query)
        raise _Refusal(404, "Not Found")

    # --- POST ------------------------------------------------------------------------------

    def _post(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        if path == "/pipelines":
            body = self._json()
            ns = self._namespace(body.get("namespace"))
            if any(p["name"] == body["name"] and p["namespace"] == ns for p in self.state.pipelines.values()):
                raise _Refusal(409, "Already exist error: pipeline name taken")
            pid = str(uuid.uuid4())
            self.state.pipelines[pid] = {
                "pipeline_id": pid,
                "name": body["name"],
                "display_name": body.get("display_name", body["name"]),
                "namespace": ns,
            }
            self.state.versions[pid] = []
            return self.state.pipelines[pid]
        if path == "/pipelines/upload_version":
            return self._upload_version(query)
        if path == "/experiments":
            body = self._json()
            ns = self._namespace(body.get("namespace"))
            eid = str(uuid.uuid4())
            self.state.experiments[eid] = {
                "experiment_id": eid,
                "display_name": body["display_name"],
                "namespace": ns,
            }
            return self.state.experiments[eid]
        if path == "/runs":
            return self._create_run(self._json())
        raise _Refusal(404, "Not Found")

    def _upload_version(self, query: dict[str, str]) -> dict[str, Any]:
        pid = query.get("pipelineid", "")
        if pid not in self.state.pipelines:
            raise _Refusal(404, f"Pipeline {pid} not found")
        length = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(length)
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + raw
        )
        parts = {p.get_param("name", header="content-disposition"): p for p in message.iter_parts()}
        if "uploadfile" not in parts:
            raise _Refusal(400, "Failed to read pipeline from file")
        try:
            spec = next(iter(yaml.safe_load_all(parts["uploadfile"].get_payload(decode=True))))
            assert isinstance(spec, dict) and "pipelineInfo" in spec and "root" in spec
        except Exception as exc:
            raise _Refusal(400, "Failed to read a pipeline spec file") from exc
        name = query.get("name") or query.get("display_name") or ""
        if any(v["name"] == name for v in self.state.versions[pid]):
            raise _Refusal(409, f"Already exist error: version {name}")
        vid = str(uuid.uuid4())
        version = {
            "pipeline_id": pid,
            "pipeline_version_id": vid,
            "name": name,
            "display_name": query.get("display_name") or name,
        }
        self.state.versions[pid].append(version)
        self.state.specs[vid] = spec
        return version

    def _create_run(self, body: dict[str, Any]) -> dict[str, Any]:
        ref = body.get("pipeline_version_reference") or {}
        spec = self.state.specs.get(ref.get("pipeline_version_id", ""))
        if spec is None or ref.get("pipeline_id") not in self.state.pipelines:
            raise _Refusal(404, "Pipeline version not found")
        if body.get("experiment_id") not in self.state.experiments:
            raise _Refusal(404, "Experiment not found")
        declared = spec["root"].get("inputDefinitions", {}).get("parameters", {})
        given = body.get("runtime_config", {}).get("parameters", {})
        unknown = set(given) - set(declared)
        missing = {
            k for k, v in declared.items() if "defaultValue" not in v and not v.get("isOptional")
        } - set(given)
        if unknown or missing:
            raise _Refusal(400, f"Invalid input error: unknown {sorted(unknown)}, missing {sorted(missing)}")
        rid = str(uuid.uuid4())
        self.state.runs[rid] = {**body, "run_id": rid, "state": "PENDING"}
        return self.state.runs[rid]


class FakeKfpServer:
    """`with FakeKfpServer(token="t") as kfp: kfp.url, kfp.state`."""

    def __init__(self, *, token: str | None = None, multi_user: bool = False) -> None:
        self.state = KfpState(token=token, multi_user=multi_user)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeKfpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
