"""Pick the two serving models: from the MLflow registry alias (`champion`) or by explicit name/path.

Order of precedence per role (describer, qa):
1. an explicit GGUF path (`PRODTUNE_LLM_QA_PATH`) for llama.cpp, or an explicit Ollama model name
   (`PRODTUNE_LLM_QA_NAME`);
2. the registry: `MlflowClient().get_model_version_by_alias("prodtune-qa", "champion")`, then the
   version's `export-summary.json` (written by the export step) names the GGUF's S3 URI and sha256;
   the file is downloaded once into a local cache keyed by model and version, and verified.
   For Ollama the registry names the Ollama model (`ollama_model` in the summary or a version tag),
   defaulting to `<registered name>:<alias>` (e.g. `prodtune-qa:champion`).

What the export step (components/export/registry.py) records, all of which is read:
- version tags `prodtune.gguf_uri`, `prodtune.gguf_sha256`, `prodtune.serve_level` (the GGUF that
  passed the eval gate) and `prodtune.modelfile_uri`;
- run artifacts beside the version's source (`<run>/model/`): `export-summary.json` (`files`:
  level -> file name, `serve_level`, `stops`) and `manifest.json` (file name -> uri, sha256, size),
  which give the other quantization levels.
Also accepted (tolerant reader): a summary with `"gguf": {"Q4_K_M": {"uri", "sha256"}, ...}` (or a
list of `{"quant", "uri", "sha256"}`, or one URI string), `ollama_model` in the summary or tags.
The level served is `PRODTUNE_LLM_QUANT` when set and available, else the gated `serve_level`.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from components.common.errors import InputError
from serving.llm.base import ChatBackend

Role = Literal["describer", "qa"]
ROLES: tuple[Role, ...] = ("describer", "qa")
SUMMARY_FILE = "export-summary.json"
# Preferred quantizations when the asked one is missing: small and good first.
QUANT_PREFERENCE = ("Q4_K_M", "Q5_K_M", "Q8_0", "Q4_1", "Q4_0", "F16", "BF16")

Downloader = Callable[[str, Path], Path]


class LlmSettings(BaseSettings):
    """Where the serving models come from (env prefix `PRODTUNE_LLM_`)."""

    model_config = SettingsConfigDict(env_prefix="PRODTUNE_LLM_", extra="ignore", frozen=True)

    backend: Literal["llamacpp", "ollama"] = "llamacpp"
    alias: str = "champion"
    describer_registered: str = "prodtune-describer"
    qa_registered: str = "prodtune-qa"
    describer_path: Path | None = None
    qa_path: Path | None = None
    describer_name: str | None = None
    qa_name: str | None = None
    quant: str | None = None  # None: the level the export gated and served
    cache_dir: Path = Field(default=Path("~/.cache/prodtune/models").expanduser())
    ollama_host: str | None = Field(
        default=None, validation_alias=AliasChoices("PRODTUNE_LLM_OLLAMA_HOST", "OLLAMA_HOST")
    )
    n_ctx: int = Field(default=2048, ge=256)
    n_threads: int | None = Field(default=None, ge=1)
    # Replies one Ollama model generates at once: set it to the Ollama server's OLLAMA_NUM_PARALLEL
    # (the chart passes the same value to both). A llama.cpp model always generates one at a time.
    ollama_num_parallel: int = Field(
        default=1,
        ge=1,
        validation_alias=AliasChoices("PRODTUNE_LLM_OLLAMA_NUM_PARALLEL", "OLLAMA_NUM_PARALLEL"),
    )
    # Requests that may queue per model beyond those generating; more get 503 + Retry-After.
    max_waiting: int = Field(default=16, ge=0)

    def registered(self, role: Role) -> str:
        return self.describer_registered if role == "describer" else self.qa_registered

    def path(self, role: Role) -> Path | None:
        return self.describer_path if role == "describer" else self.qa_path

    def name(self, role: Role) -> str | None:
        return self.describer_name if role == "describer" else self.qa_name


@dataclass(frozen=True)
class ResolvedModel:
    role: Role
    backend: Literal["llamacpp", "ollama"]
    name: str  # what the API reports as the backend model
    path: Path | None  # local GGUF for llama.cpp
    source: str  # where it came from, for logs and /v1/models
    version: str | None = None
    stops: tuple[str, ...] = ()  # the exported Modelfile's stop strings


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _field(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


TAG_GGUF_URI = "prodtune.gguf_uri"
TAG_GGUF_SHA = "prodtune.gguf_sha256"
TAG_LEVEL = "prodtune.serve_level"
TAG_MODELFILE_URI = "prodtune.modelfile_uri"


def _entries(gguf: Any) -> dict[str, dict[str, Any]]:
    """{LEVEL: {"uri", "sha256"}} from the accepted `gguf` shapes."""
    entries: dict[str, dict[str, Any]] = {}
    if isinstance(gguf, str):
        entries["?"] = {"uri": gguf}
    elif isinstance(gguf, Mapping):
        for q, v in gguf.items():
            entries[str(q).upper()] = {"uri": v} if isinstance(v, str) else dict(v)
    elif isinstance(gguf, list):
        for v in gguf:
            if isinstance(v, Mapping) and v.get("uri"):
                entries[str(v.get("quant") or v.get("quantization") or "?").upper()] = dict(v)
    return {q: v for q, v in entries.items() if v.get("uri") or v.get("s3_uri")}


def pick_gguf(summary: Mapping[str, Any], quant: str | None) -> tuple[str, str | None, str]:
    """(uri, sha256 or None, level): the asked level, else the served one, else the best available."""
    entries = _entries(summary.get("gguf"))
    if not entries:
        raise InputError("export summary names no GGUF file", path=SUMMARY_FILE, field="gguf")
    served = str(summary.get("serve_level") or "").upper()
    order = [q for q in (quant and quant.upper(), served) if q] + [*QUANT_PREFERENCE, *sorted(entries)]
    chosen = next(q for q in order if q in entries)
    entry = entries[chosen]
    return str(entry.get("uri") or entry.get("s3_uri")), entry.get("sha256") or None, chosen


def _artifact_dirs(version: Any) -> list[str]:
    """Where the version's files sit inside its run: the source's sub-path, then `model/`, then root."""
    source = str(_field(version, "source") or "")
    sub = ""
    if source.startswith("runs:/") and "/" in source[6:]:
        sub = source[6:].split("/", 1)[1]
    elif "/artifacts/" in source:
        sub = source.split("/artifacts/", 1)[1]
    return list(dict.fromkeys([sub.strip("/"), "model", ""]))


def _download_json(client: Any, run_id: str, path: str, tmp: str) -> dict[str, Any] | None:
    try:
        local = client.download_artifacts(run_id, path, tmp)
    except Exception:  # not there (MLflow raises several types): the caller tries the next place
        return None
    return json.loads(Path(local).read_text(encoding="utf-8"))


def read_export_summary(client: Any, version: Any) -> dict[str, Any]:
    """The version's export facts, normalized to {"gguf": {LEVEL: {"uri", "sha256"}}, "serve_level",
    "modelfile_uri", "ollama_model", "stops"}, from its run artifacts and its tags."""
    run_id = _field(version, "run_id")
    tags = dict(_field(version, "tags") or {})
    summary: dict[str, Any] = {}
    manifest: dict[str, Any] = {}
    if run_id:
        with tempfile.TemporaryDirectory() as tmp:
            for folder in _artifact_dirs(version):
                prefix = f"{folder}/" if folder else ""
                found = _download_json(client, run_id, prefix + SUMMARY_FILE, tmp)
                if found is not None:
                    summary = found
                    manifest = _download_json(client, run_id, prefix + "manifest.json", tmp) or {}
                    break
    gguf = _entries(summary.get("gguf"))
    for level, name in (summary.get("files") or {}).items():  # the exporter's layout
        if isinstance(manifest.get(name), Mapping):
            gguf.setdefault(str(level).upper(), dict(manifest[name]))
    served = tags.get(TAG_LEVEL) or summary.get("serve_level")
    if tags.get(TAG_GGUF_URI):  # the gated, served file: authoritative for its level
        gguf[str(served or "SERVED").upper()] = {"uri": tags[TAG_GGUF_URI], "sha256": tags.get(TAG_GGUF_SHA)}
    for key, value in tags.items():  # older tag forms: gguf.<LEVEL>.uri / gguf_uri
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "gguf" and parts[2] in ("uri", "sha256"):
            gguf.setdefault(parts[1].upper(), {})[parts[2]] = value
    if tags.get("gguf_uri"):
        gguf.setdefault(
            tags.get("gguf_quant", "?").upper(), {"uri": tags["gguf_uri"], "sha256": tags.get("gguf_sha256")}
        )
    if not gguf:
        raise InputError(
            f"model version {_field(version, 'name')} v{_field(version, 'version')} names no GGUF "
            f"(no {SUMMARY_FILE}/manifest.json artifact and no {TAG_GGUF_URI} tag)",
            field="gguf",
        )
    modelfile = manifest.get(summary.get("modelfile") or "Modelfile") or {}
    return {
        "gguf": gguf,
        "serve_level": served,
        "modelfile_uri": summary.get("modelfile_uri") or tags.get(TAG_MODELFILE_URI) or modelfile.get("uri"),
        "ollama_model": summary.get("ollama_model") or tags.get("ollama_model"),
        "stops": [str(x) for x in summary.get("stops") or []],
    }


def s3_download(uri: str, dest: Path) -> Path:
    """Default downloader: the project's S3 store (credentials from env, see components.common.settings)."""
    from components.common import storage
    from components.common.settings import get_settings

    store_cls = storage.S3Store
    factory = getattr(store_cls, "from_settings", None)
    store = factory(get_settings()) if factory else store_cls(get_settings())
    store.download_file(uri, dest, verify=True)
    return dest


def fetch_gguf(uri: str, sha256: str | None, dest: Path, download: Downloader | None = None) -> Path:
    """Download once into the cache; a cached file whose checksum differs is fetched again."""
    if dest.is_file() and (not sha256 or sha256_file(dest) == sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".tmp-{dest.name}")
    (download or s3_download)(uri, tmp)
    if sha256 and sha256_file(tmp) != sha256:
        tmp.unlink(missing_ok=True)
        raise InputError(f"checksum mismatch for {uri}", path=dest)
    tmp.replace(dest)
    return dest


def _registry_version(client: Any, registered: str, alias: str) -> Any:
    try:
        return client.get_model_version_by_alias(registered, alias)
    except Exception as exc:  # MlflowException (missing model/alias) or a connection error
        raise InputError(f"no version of '{registered}' has alias '{alias}' in the registry: {exc}") from exc


def resolve_model(
    role: Role, settings: LlmSettings, *, client: Any | None = None, download: Downloader | None = None
) -> ResolvedModel:
    registered = settings.registered(role)
    explicit_path, explicit_name = settings.path(role), settings.name(role)
    if settings.backend == "llamacpp" and explicit_path is not None:
        if not explicit_path.is_file():
            raise InputError("GGUF model file not found", path=explicit_path, field=f"{role}_path")
        return ResolvedModel(role, "llamacpp", explicit_name or explicit_path.stem, explicit_path, "path")
    if settings.backend == "ollama" and explicit_name:
        return ResolvedModel(role, "ollama", explicit_name, None, "name")
    if client is None:
        from mlflow import MlflowClient

        client = MlflowClient()
    version = _registry_version(client, registered, settings.alias)
    number = str(_field(version, "version"))
    source = f"models:/{registered}@{settings.alias} (v{number})"
    if settings.backend == "ollama":
        tags = dict(_field(version, "tags") or {})
        try:
            summary = read_export_summary(client, version)
        except InputError:
            summary = {}
        name = summary.get("ollama_model") or tags.get("ollama_model") or f"{registered}:{settings.alias}"
        return ResolvedModel(role, "ollama", str(name), None, source, number)
    summary = read_export_summary(client, version)
    uri, sha256, quant = pick_gguf(summary, settings.quant)
    filename = uri.rstrip("/").rsplit("/", 1)[-1] or f"{registered}-{quant}.gguf"
    dest = settings.cache_dir.expanduser() / registered / f"v{number}" / filename
    path = fetch_gguf(uri, sha256, dest, download)
    stops = tuple(summary.get("stops") or ())
    return ResolvedModel(role, "llamacpp", f"{registered}:v{number}-{quant}", path, source, number, stops)


def load_backend(resolved: ResolvedModel, settings: LlmSettings) -> ChatBackend:
    if resolved.backend == "ollama":
        from serving.llm.ollama_backend import OllamaBackend

        return OllamaBackend(
            resolved.name,
            host=settings.ollama_host,
            concurrency=settings.ollama_num_parallel,
            max_waiting=settings.max_waiting,
        )
    from serving.llm.llamacpp import LlamaCppBackend

    assert resolved.path is not None
    return LlamaCppBackend(
        resolved.path,
        model=resolved.name,
        n_ctx=settings.n_ctx,
        n_threads=settings.n_threads,
        extra_stops=resolved.stops,
        max_waiting=settings.max_waiting,
    )


def load_backends(
    settings: LlmSettings | None = None, *, client: Any | None = None, download: Downloader | None = None
) -> tuple[dict[Role, ChatBackend], dict[Role, ResolvedModel]]:
    """Resolve and load both roles. The same GGUF for both roles is loaded once."""
    settings = settings or LlmSettings()
    resolved = {role: resolve_model(role, settings, client=client, download=download) for role in ROLES}
    backends: dict[Role, ChatBackend] = {}
    loaded: dict[tuple[str, str], ChatBackend] = {}
    for role, res in resolved.items():
        key = (res.backend, str(res.path or res.name))
        if key not in loaded:
            loaded[key] = load_backend(res, settings)
        backends[role] = loaded[key]
    return backends, resolved
