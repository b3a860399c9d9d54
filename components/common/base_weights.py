"""Base weights where the step runs: a local directory, a Hugging Face repo id, or an S3 prefix.

`base_model` (fine-tune config; the export gate reads it from the fine-tune summary) is one of:

- a local directory with `config.json` (the embedded default; used as is);
- `org/name` or `org/name@revision` (or `hf://org/name@revision`): downloaded at run time with
  huggingface_hub into the base cache, with `HF_TOKEN` from the environment (in Kubernetes, a
  Secret exposed as env). The images set `HF_HUB_OFFLINE=1` so that no library reaches the hub
  implicitly; naming a repo id here is the one explicit download, and `PRODTUNE_BASE_OFFLINE=1`
  forbids even that (the cache must already hold the revision);
- `s3://bucket/prefix/` written by `prodtune models stage` (files plus `prodtune-manifest.json`
  with each file's sha256): mirrored once into the base cache, every file checked, then reused.

The base cache is `$PRODTUNE_BASE_CACHE` (mount a PVC there in the cluster), default
`${PRODTUNE_CACHE:-~/.cache/prodtune}/base-models`. Every failure is one `InputError` line naming
the model and the cause (not found, bad revision, bad token, checksum mismatch, no weights).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from components.common.atomic import atomic_dir, write_json
from components.common.cache import cache_root
from components.common.errors import InputError

log = logging.getLogger(__name__)

MANIFEST = "prodtune-manifest.json"
_COMPLETE = ".prodtune-complete"
# What a fine-tune, a merge and a GGUF conversion read; not `original/` (Meta's .pth copy, 6 GB for
# 3B), not *.bin or *.gguf duplicates of the safetensors.
HF_ALLOW = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken", "*.py"]
HF_IGNORE = ["original/*", "*.gguf", "*.pth", "*.bin", "*.msgpack", "*.h5", "*.onnx"]
_REPO_ID = re.compile(r"^(?:hf://)?([A-Za-z0-9][\w.\-]*/[\w.\-]+)(?:@([\w.\-/]+))?$")

Source = Literal["local", "hf", "s3"]


@dataclass(frozen=True)
class BaseWeights:
    """Where a base model was found, and what exactly it is (for MLflow and the summaries)."""

    spec: str
    source: Source
    path: Path
    revision: str | None = None  # hf: resolved commit sha; s3: sha256 of the manifest
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256

    def as_params(self) -> dict[str, str]:
        return {
            "base_weights.spec": self.spec,
            "base_weights.source": self.source,
            "base_weights.revision": self.revision or "",
            "base_weights.files": str(len(self.files)),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "source": self.source,
            "path": str(self.path),
            "revision": self.revision,
            "files": self.files,
        }


def base_cache_dir() -> Path:
    if os.environ.get("PRODTUNE_BASE_CACHE"):
        return Path(os.environ["PRODTUNE_BASE_CACHE"]).expanduser()
    return cache_root() / "base-models"


def classify(spec: str) -> tuple[Source, str, str | None]:
    """(source, location, revision). A path that exists wins over a repo-id-looking string."""
    text = spec.strip()
    if text.startswith("s3://"):
        return "s3", text, None
    if text.startswith("hf://") or (
        not Path(text).expanduser().exists() and not text.startswith((".", "/", "~"))
    ):
        m = _REPO_ID.match(text)
        if m:
            return "hf", m.group(1), m.group(2)
    return "local", str(Path(text).expanduser()), None


def resolve_base_weights(
    spec: str, *, cache_dir: Path | None = None, store: Any = None, hash_local: bool = False
) -> BaseWeights:
    """A local directory holding `spec`'s weights (downloading/mirroring into the cache if needed)."""
    source, location, revision = classify(spec)
    cache = cache_dir or base_cache_dir()
    if source == "s3":
        return _from_s3(spec, location, cache, store)
    if source == "hf":
        return _from_hf(spec, location, revision, cache)
    path = Path(location)
    if not (path / "config.json").is_file():
        raise InputError(
            f"base model {spec!r}: directory not found or has no config.json", field="base_model"
        )
    return BaseWeights(spec, "local", path, files=file_hashes(path) if hash_local else {})


def localize(config: Any, tracker: Any = None) -> tuple[Any, BaseWeights]:
    """`config` with `base_model` replaced by the local directory, and what was resolved.

    The one call a step makes at its start; with a tracker, the source, revision and every
    file's sha256 go to MLflow (params + `base-weights.json`).
    """
    weights = resolve_base_weights(config.base_model, hash_local=tracker is not None)
    if tracker is not None:
        tracker.log_params(weights.as_params())
        tracker.log_dict(weights.as_dict(), "base-weights.json")
    log.info(
        "base model %s -> %s (%s %s)", weights.spec, weights.path, weights.source, weights.revision or ""
    )
    return config.model_copy(update={"base_model": str(weights.path)}), weights


def file_hashes(root: Path) -> dict[str, str]:
    from components.common.storage import sha256_file

    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not _private(p.relative_to(root))
    }


def _private(rel: Path) -> bool:
    # huggingface_hub's local-dir metadata, our markers and temp files are not model files.
    return any(part.startswith(".") for part in rel.parts)


# --- Hugging Face ------------------------------------------------------------------------------


@contextlib.contextmanager
def _hub_online() -> Iterator[None]:
    """Allow huggingface_hub to reach the hub for this explicit download despite HF_HUB_OFFLINE=1
    in the image (it reads the flag per request from `constants`)."""
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = os.environ.get("PRODTUNE_BASE_OFFLINE", "") in ("1", "true", "yes")
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved


def _from_hf(spec: str, repo_id: str, revision: str | None, cache: Path) -> BaseWeights:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    token = os.environ.get("HF_TOKEN") or None
    try:
        with _hub_online():
            path = Path(
                snapshot_download(
                    repo_id,
                    revision=revision or "main",
                    cache_dir=str(cache / "hf"),
                    token=token if token else False,
                    # read per call: huggingface_hub reads HF_ENDPOINT once, at import
                    endpoint=os.environ.get("HF_ENDPOINT") or None,
                    allow_patterns=HF_ALLOW,
                    ignore_patterns=HF_IGNORE,
                )
            )
    except RevisionNotFoundError:
        raise _hf_error(spec, f"revision {revision or 'main'!r} not found") from None
    except GatedRepoError:
        raise _hf_error(spec, "gated repo: HF_TOKEN missing or not granted access") from None
    except RepositoryNotFoundError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        cause = (
            "not found, or private and HF_TOKEN missing/invalid"
            if status == 401 or not token
            else "not found"
        )
        raise _hf_error(spec, f"repository {cause} (HTTP {status})") from None
    except LocalEntryNotFoundError as exc:
        raise _hf_error(
            spec, f"not in the cache and the hub cannot be reached ({_first_line(exc)})"
        ) from None
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        cause = "HF_TOKEN rejected" if status in (401, 403) else _first_line(exc)
        raise _hf_error(spec, f"{cause} (HTTP {status})") from None
    except OSError as exc:  # disk full, unwritable cache dir
        raise _hf_error(spec, f"{type(exc).__name__}: {exc}") from None
    if not (path / "config.json").is_file() or not any(path.glob("*.safetensors")):
        raise _hf_error(spec, "the repo has no config.json or no *.safetensors weights")
    return BaseWeights(spec, "hf", path, revision=path.name, files=file_hashes(path))


def _hf_error(spec: str, cause: str) -> InputError:
    return InputError(
        f"base model {spec!r} (Hugging Face, endpoint {_endpoint()}): {cause}", field="base_model"
    )


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT") or "https://huggingface.co"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --- S3 ----------------------------------------------------------------------------------------


def _store(store: Any) -> Any:
    from components.common.storage import S3Store

    return store or S3Store.from_settings()


def _from_s3(spec: str, uri: str, cache: Path, store: Any) -> BaseWeights:
    import hashlib
    import tempfile

    from components.common.storage import StorageError, sha256_file

    store = _store(store)
    prefix = uri.rstrip("/")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            manifest_path = store.download_file(f"{prefix}/{MANIFEST}", Path(tmp) / MANIFEST)
        except StorageError as exc:
            raise InputError(
                f"base model {spec!r}: no {MANIFEST} ({exc}); stage it with `prodtune models stage`",
                field="base_model",
            ) from None
        raw = manifest_path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    try:
        files = {name: entry["sha256"] for name, entry in json.loads(raw)["files"].items()}
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"base model {spec!r}: invalid {MANIFEST}: {exc}", field="base_model") from None
    target = cache / "s3" / digest[:32]
    if (target / _COMPLETE).is_file():
        return BaseWeights(spec, "s3", target, revision=digest, files=files)
    with atomic_dir(target) as tmp_dir:
        for name, sha in files.items():
            rel = Path(name)
            if rel.is_absolute() or ".." in rel.parts:
                raise InputError(f"base model {spec!r}: manifest entry escapes the prefix: {name!r}")
            try:
                local = store.download_file(f"{prefix}/{name}", tmp_dir / rel, verify=True)
            except StorageError as exc:
                raise InputError(f"base model {spec!r}: {exc}", field="base_model") from None
            if sha256_file(local) != sha:
                raise InputError(
                    f"base model {spec!r}: {name} does not match the manifest's sha256", field="base_model"
                )
        (tmp_dir / _COMPLETE).write_text(digest + "\n", encoding="utf-8")
    if not (target / "config.json").is_file():
        raise InputError(f"base model {spec!r}: the staged files have no config.json", field="base_model")
    return BaseWeights(spec, "s3", target, revision=digest, files=files)


def stage(spec: str, dest: str, *, store: Any = None, cache_dir: Path | None = None) -> dict[str, Any]:
    """Copy base weights (local dir or HF repo id) to `dest` (s3://...) with a sha256 manifest.

    The manifest goes up last, so an interrupted stage is never mistaken for a complete one.
    """
    if not dest.startswith("s3://"):
        raise InputError(f"--to must be an s3:// prefix, got {dest!r}", field="to")
    weights = resolve_base_weights(spec, cache_dir=cache_dir, hash_local=True)
    store = _store(store)
    prefix = dest.rstrip("/")
    entries: dict[str, dict[str, Any]] = {}
    for name, sha in weights.files.items():
        obj = store.upload_file(weights.path / name, f"{prefix}/{name}")
        if obj.sha256 != sha:
            raise InputError(
                f"{name} changed while staging (sha256 {sha} -> {obj.sha256})", path=weights.path
            )
        entries[name] = {"sha256": obj.sha256, "size": obj.size}
    manifest = {"source": weights.spec, "revision": weights.revision, "files": entries}
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        write_json(Path(tmp) / MANIFEST, manifest)
        store.upload_file(Path(tmp) / MANIFEST, f"{prefix}/{MANIFEST}")
    return {"uri": f"{prefix}/", **manifest}
