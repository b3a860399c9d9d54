"""`prodtune submit`: upload the pipeline and a version, reuse or create an experiment, start a run.

Talks to the KFP v2beta1 REST API with httpx rather than `kfp.Client`: the client health-checks in
its constructor with five 5-second retries, logs a traceback per attempt and prints links on
stdout, where a refused host must be one line and exit code 2. Endpoints and field names follow
backend/api/v2beta1/*.proto and the upload handlers (multipart field `uploadfile`).

Idempotent: the version's name is the package's sha256 prefix, so submitting the same package
again reuses the version; the experiment is looked up by name before it is created.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components.common.errors import InputError

API = "/apis/v2beta1"
# `prodtune submit` defaults per manifests overlay: where KFP runs the pods and as whom.
OVERLAYS = {
    # Standalone KFP: every run in `kubeflow`, as `pipeline-runner`; the API takes no namespace.
    "standalone": {"namespace": None, "service_account": "pipeline-runner"},
    # Multi-user KFP: runs in a profile namespace as `default-editor` (manifests/kfp/multi-user).
    "multi-user": {"namespace": "kubeflow-user-example-com", "service_account": "default-editor"},
}

# Where kfp.Client looks for a projected KFP token, then the pod's service-account token.
SA_TOKEN_PATHS = (
    os.environ.get("KF_PIPELINES_SA_TOKEN_PATH", "/var/run/secrets/kubeflow/pipelines/token"),
    "/var/run/secrets/kubernetes.io/serviceaccount/token",
)


class SubmitError(InputError):
    """One line for the user: which host (or file) and why (the CLI exits with status 2)."""


@dataclass
class Auth:
    """`none`, `bearer` (token from KFP_TOKEN or a file) or `in-cluster` (service-account token)."""

    mode: str = "none"
    token_file: Path | None = None

    def header(self) -> dict[str, str]:
        if self.mode == "none":
            return {}
        if self.mode == "bearer":
            token = os.environ.get("KFP_TOKEN", "")
            if self.token_file:
                token = _read_token(self.token_file)
            if not token:
                raise SubmitError("--auth bearer needs KFP_TOKEN in the environment or --token-file")
        elif self.mode == "in-cluster":
            paths = [self.token_file] if self.token_file else [Path(p) for p in SA_TOKEN_PATHS]
            found = next((p for p in paths if p.is_file()), None)
            if found is None:
                raise SubmitError(
                    f"--auth in-cluster: no service-account token at {', '.join(map(str, paths))}"
                )
            token = _read_token(found)
        else:
            raise SubmitError(f"unknown --auth {self.mode!r} (none, bearer, in-cluster)")
        return {"Authorization": f"Bearer {token}"}


def _read_token(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise SubmitError(f"cannot read token file {path}: {exc.strerror}") from exc


@dataclass
class SubmitRequest:
    host: str
    package: Path
    arguments: dict[str, Any]
    experiment: str = "prodtune"
    pipeline_name: str = "prodtune"
    run_name: str | None = None
    namespace: str | None = None
    service_account: str | None = None
    caching: str = "auto"  # auto: each task's setting in the package; on/off: every task
    pipeline_root: str | None = None
    auth: Auth = field(default_factory=Auth)
    timeout: float = 30.0


@dataclass(frozen=True)
class SubmitResult:
    run_id: str
    pipeline_id: str
    version_id: str
    version_name: str
    experiment_id: str
    version_reused: bool
    experiment_reused: bool

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def check_package(path: Path) -> bytes:
    """The package bytes; a file that is not a KFP v2 package fails here, before any upload."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SubmitError(f"package {path}: {exc.strerror}") from exc
    try:
        docs = [d for d in yaml.safe_load_all(data) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise SubmitError(f"package {path}{where}: not YAML ({getattr(exc, 'problem', exc)})") from exc
    spec = docs[0] if docs and isinstance(docs[0], dict) else {}
    missing = [k for k in ("pipelineInfo", "root", "deploymentSpec") if k not in spec]
    if missing:
        raise SubmitError(f"package {path}: not a KFP v2 pipeline (no {', '.join(missing)})")
    return data


def with_caching(data: bytes, caching: str) -> bytes:
    """The package with every task's cache switched on or off (`auto` leaves it as compiled).

    A run that references an uploaded version cannot override caching (kfp.Client does it only
    for inline specs, the same way: root.dag.tasks[*].cachingOptions), so the override is part of
    the uploaded package and of its content hash.
    """
    if caching == "auto":
        return data
    if caching not in ("on", "off"):
        raise SubmitError(f"--caching must be auto, on or off, not {caching!r}")
    docs = [d for d in yaml.safe_load_all(data) if d is not None]
    for task in docs[0]["root"]["dag"]["tasks"].values():
        task.setdefault("cachingOptions", {})["enableCache"] = caching == "on"
    return yaml.safe_dump_all(docs, sort_keys=False).encode()


def version_name(data: bytes) -> str:
    return f"sha256-{hashlib.sha256(data).hexdigest()[:16]}"


class KfpApi:
    """The few v2beta1 calls submit needs; every failure becomes one SubmitError line."""

    def __init__(self, host: str, auth: Auth, timeout: float = 30.0) -> None:
        import httpx

        if not host.startswith(("http://", "https://")):
            raise SubmitError(f"--host {host!r} must start with http:// or https://")
        self.host = host.rstrip("/")
        self._client = httpx.Client(base_url=self.host, headers=auth.header(), timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def call(self, method: str, path: str, *, ok404: bool = False, **kwargs: Any) -> dict[str, Any] | None:
        import httpx

        try:
            resp = self._client.request(method, API + path, **kwargs)
        except httpx.ConnectError as exc:
            raise SubmitError(f"cannot reach KFP at {self.host}: {_reason(exc)}") from exc
        except httpx.TimeoutException as exc:
            raise SubmitError(f"KFP at {self.host} did not answer in time ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise SubmitError(f"KFP at {self.host}: {type(exc).__name__}: {exc}") from exc
        if resp.status_code == 404 and ok404:
            return None
        if resp.status_code in (401, 403):
            raise SubmitError(
                f"KFP at {self.host} refused the request (HTTP {resp.status_code}: {_message(resp)}); "
                "check --auth / KFP_TOKEN and --namespace"
            )
        if resp.status_code == 404:
            raise SubmitError(
                f"KFP at {self.host} has no {API + path} (HTTP 404): is --host the KFP API endpoint "
                "(e.g. http://ml-pipeline-ui.kubeflow or a port-forward to it)?"
            )
        if resp.status_code >= 400:
            raise SubmitError(
                f"KFP at {self.host}: {method} {path} failed (HTTP {resp.status_code}: {_message(resp)})"
            )
        try:
            return resp.json() if resp.content else {}
        except ValueError as exc:
            raise SubmitError(
                f"KFP at {self.host}: {path} answered non-JSON (is --host a KFP endpoint?)"
            ) from exc

    def pages(self, path: str, key: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        items, token = [], ""
        while True:
            body = self.call("GET", path, params={**params, "page_size": 100, "page_token": token}) or {}
            items += body.get(key, [])
            token = body.get("next_page_token", "")
            if not token:
                return items


def submit(req: SubmitRequest) -> SubmitResult:
    data = with_caching(check_package(req.package), req.caching)
    api = KfpApi(req.host, req.auth, req.timeout)
    try:
        return _submit(api, req, data)
    finally:
        api.close()


def _ns(req: SubmitRequest) -> dict[str, str]:
    return {"namespace": req.namespace} if req.namespace else {}


def _submit(api: KfpApi, req: SubmitRequest, data: bytes) -> SubmitResult:
    name = version_name(data)
    pipeline = api.call("GET", f"/pipelines/names/{req.pipeline_name}", params=_ns(req), ok404=True)
    if pipeline is None:
        # CreatePipeline makes the pipeline without a version (upload would add one named after
        # the pipeline, not after the content), so every version below is named by its hash.
        pipeline = api.call(
            "POST",
            "/pipelines",
            json={"name": req.pipeline_name, "display_name": req.pipeline_name, **_ns(req)},
        )
    pipeline_id = pipeline["pipeline_id"]
    versions = api.pages(f"/pipelines/{pipeline_id}/versions", "pipeline_versions", {})
    version = next((v for v in versions if name in (v.get("name"), v.get("display_name"))), None)
    reused = version is not None
    if version is None:
        files = {"uploadfile": (f"{req.pipeline_name}-{name}.yaml", data, "application/x-yaml")}
        version = api.call(
            "POST",
            "/pipelines/upload_version",
            params={"name": name, "display_name": name, "pipelineid": pipeline_id},
            files=files,
        )
    experiment, exp_reused = _experiment(api, req)
    run = _run(api, req, pipeline_id, version["pipeline_version_id"], experiment)
    return SubmitResult(
        run_id=run["run_id"],
        pipeline_id=pipeline_id,
        version_id=version["pipeline_version_id"],
        version_name=name,
        experiment_id=experiment,
        version_reused=reused,
        experiment_reused=exp_reused,
    )


def _experiment(api: KfpApi, req: SubmitRequest) -> tuple[str, bool]:
    found = api.pages("/experiments", "experiments", _ns(req))
    match = next((e for e in found if e.get("display_name") == req.experiment), None)
    if match:
        return match["experiment_id"], True
    created = api.call("POST", "/experiments", json={"display_name": req.experiment, **_ns(req)})
    return created["experiment_id"], False


def _run(api: KfpApi, req: SubmitRequest, pipeline_id: str, version_id: str, experiment_id: str) -> dict:
    runtime: dict[str, Any] = {"parameters": req.arguments}
    if req.pipeline_root:
        runtime["pipeline_root"] = req.pipeline_root
    body: dict[str, Any] = {
        "display_name": req.run_name or f"{req.pipeline_name}-{version_id[:8]}",
        "experiment_id": experiment_id,
        "pipeline_version_reference": {"pipeline_id": pipeline_id, "pipeline_version_id": version_id},
        "runtime_config": runtime,
    }
    if req.service_account:
        body["service_account"] = req.service_account
    return api.call("POST", "/runs", json=body)


def _message(resp: Any) -> str:
    """The server's reason in one short line: KFP's JSON `error_message`, else the first text line."""
    try:
        body = resp.json()
    except ValueError:
        lines = resp.text.strip().splitlines()
        return (lines[0] if lines else resp.reason_phrase)[:200]
    if isinstance(body, dict):
        body = body.get("error_message") or body.get("message") or body
    return str(body).replace("\n", " ")[:200]


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if "refused" in text.lower():
        return "connection refused"
    return text.splitlines()[0][:200]


def load_arguments(values: list[str]) -> dict[str, Any]:
    """`--param key=value` pairs (JSON values when they parse)."""
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SubmitError(f"--param expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out
