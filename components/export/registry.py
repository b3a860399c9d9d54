"""S3 upload with sha256 and MLflow registration: one registered model per task, aliases as state.

- Every GGUF, the Modelfile, the summary and the adapter go to
  `s3://<bucket>/<prefix>/<task>/<run_id>/...` with their sha256 (boto3 managed transfer: multipart
  above 64 MiB, so a 7B f16 GGUF over the 5 GB single-PUT limit uploads fine).
- The MLflow run `export-<task>` records params, per-level metrics, the Modelfile and a manifest
  (`model/manifest.json`: S3 URI, sha256 and size of each file); the model version's source is that
  `model/` artifact dir and its tags carry the served GGUF's URI and sha256.
- Alias `candidate` always moves to the new version; `champion` only if the promotion gate
  (components/export/gate.py) passed against the champion it compared with, and that champion is
  still the champion. The gate report (table, plot, per-example outputs) is logged under `gate/`.
  `promote` refuses to point `champion` at a version whose gate failed unless forced.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from components.common.errors import InputError
from components.common.settings import Settings, get_settings
from components.common.storage import S3Store
from components.common.tracking import step_run

MODEL_NAMES = {"describer": "prodtune-describer", "qa": "prodtune-qa"}
CANDIDATE, CHAMPION = "candidate", "champion"
TAG_GATE = "prodtune.gate_passed"
TAG_TASK = "prodtune.task"
TAG_GGUF_URI = "prodtune.gguf_uri"
TAG_GGUF_SHA = "prodtune.gguf_sha256"
TAG_LEVEL = "prodtune.serve_level"
TAG_MODELFILE_URI = "prodtune.modelfile_uri"


def model_name(task: str) -> str:
    if task not in MODEL_NAMES:
        raise InputError(f"unknown task {task!r} (known: {', '.join(MODEL_NAMES)})", field="task")
    return MODEL_NAMES[task]


def _client(settings: Settings) -> Any:
    import mlflow
    from mlflow import MlflowClient

    if not settings.mlflow_tracking_uri:
        raise InputError("MLFLOW_TRACKING_URI is not set", field="MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    return MlflowClient(tracking_uri=settings.mlflow_tracking_uri)


def upload_export(
    store: S3Store, out_dir: Path, files: dict[str, str], adapter_dir: Path | None, prefix: str
) -> dict[str, dict[str, Any]]:
    """Upload the export's files (and the adapter tree); return {name: {uri, sha256, size}}."""
    manifest: dict[str, dict[str, Any]] = {}
    uploads = [(name, out_dir / name) for name in files.values()]
    uploads += [(name, out_dir / name) for name in ("Modelfile", "export-summary.json")]
    if adapter_dir is not None and adapter_dir.is_dir():
        uploads += [
            (f"adapter/{p.relative_to(adapter_dir)}", p)
            for p in sorted(adapter_dir.rglob("*"))
            if p.is_file()
        ]
    for name, path in uploads:
        obj = store.upload_file(path, f"{prefix}/{name}")
        manifest[name] = {"uri": obj.uri, "sha256": obj.sha256, "size": obj.size}
    return manifest


def _flat_metrics(summary: dict[str, Any]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for level, row in summary.get("levels", {}).items():
        for key in (
            "size_bytes",
            "perplexity",
            "perplexity_delta_pct",
            "tokens_per_s",
            "token_agreement",
            "prefix_match",
            "exact",
        ):
            if key in row:
                metrics[f"{level}.{key}"] = float(row[key])
    gate = summary.get("eval_gate", {})
    for key in ("base", "champion", "finetuned", "improvement", "n"):
        if isinstance(gate.get(key), (int, float)):
            metrics[f"gate.{key}"] = float(gate[key])
    for metric, row in (gate.get("rows") or {}).items():
        for key in ("candidate", "reference", "mean", "low", "high"):
            metrics[f"gate.{metric}.{key}"] = float(row[key])
    metrics["gate.passed"] = float(bool(gate.get("passed")))
    for side, values in (summary.get("finetune_eval") or {}).items():
        if isinstance(values, dict):
            metrics.update(
                {
                    f"finetune_eval.{side}.{k}": float(v)
                    for k, v in values.items()
                    if isinstance(v, (int, float))
                }
            )
    return metrics


def publish(
    out_dir: Path, summary: dict[str, Any], adapter_dir: Path | None, settings: Settings | None, config: Any
) -> dict[str, Any]:
    """Upload to S3, log the run and register a model version with aliases; return what was done."""
    settings = settings or get_settings()
    task = summary["task"]
    name = model_name(task)
    store = S3Store.from_settings(settings)
    store.ensure_bucket()
    client = _client(settings)
    params = {
        "task": task,
        "serve_level": summary["serve_level"],
        "levels": ",".join(summary["files"]),
        "gate.margin": config.gate.margin,
        "gate.nll_margin": config.gate.nll_margin,
        "gate.min_examples": config.gate.min_examples,
    }
    with step_run(f"export-{task}", params, settings=settings) as tracker:
        run_id = tracker.run_id
        manifest = upload_export(
            store, out_dir, summary["files"], adapter_dir, f"{config.s3_prefix}/{task}/{run_id}"
        )
        served = manifest[summary["files"][summary["serve_level"]]]
        tracker.log_metrics(_flat_metrics(summary))
        tracker.log_dict(manifest, "model/manifest.json")
        tracker.log_dict(summary, "model/export-summary.json")
        tracker.log_artifact(out_dir / "Modelfile", "model")
        tags = {
            TAG_TASK: task,
            TAG_GATE: str(bool(summary["eval_gate"].get("passed"))).lower(),
            TAG_GGUF_URI: served["uri"],
            TAG_GGUF_SHA: served["sha256"],
            TAG_LEVEL: summary["serve_level"],
            TAG_MODELFILE_URI: manifest["Modelfile"]["uri"],
        }
        tracker.set_tags(tags)
        _log_gate_report(tracker, out_dir)
        artifact_uri = client.get_run(run_id).info.artifact_uri
        version = register_version(client, name, f"{artifact_uri}/model", run_id, tags)
    aliases = [CANDIDATE]
    client.set_registered_model_alias(name, CANDIDATE, version)
    champion_note = _champion_move(client, name, summary.get("eval_gate", {}))
    if champion_note is None:
        client.set_registered_model_alias(name, CHAMPION, version)
        aliases.append(CHAMPION)
    return {
        "model_name": name,
        "version": version,
        "aliases": aliases,
        "run_id": run_id,
        "manifest": manifest,
        "champion": champion_note or "moved",
    }


def _champion_move(client: Any, name: str, gate: dict[str, Any]) -> str | None:
    """None if `champion` may move to the new version, else why not.

    The gate compared against one champion version (or the base when there was none); if the alias
    moved meanwhile (another export finished first), that comparison no longer holds.
    """
    if not gate.get("passed"):
        return f"stays: gate failed ({gate.get('reason', 'no gate result')})"
    compared = gate.get("champion_version")
    current = _alias_version(client, name, CHAMPION)
    if current != (str(compared) if compared is not None else None):
        return f"stays: champion is v{current} now, the gate compared against {compared or 'the base'}"
    return None


def _log_gate_report(tracker: Any, out_dir: Path) -> None:
    from components.export.gate import REPORT_JSON, REPORT_MD, REPORT_PNG

    for name in (REPORT_MD, REPORT_PNG, REPORT_JSON):
        if (out_dir / name).is_file():
            tracker.log_artifact(out_dir / name, "gate")


def download_champion(task: str, dest: Path, settings: Settings | None = None) -> dict[str, Any] | None:
    """The current champion's served GGUF and Modelfile, downloaded and sha256-checked; None if none."""
    settings = settings or get_settings()
    client = _client(settings)
    name = model_name(task)
    version = _alias_version(client, name, CHAMPION)
    if version is None:
        return None
    mv = client.get_model_version(name, version)
    store = S3Store.from_settings(settings)
    gguf_uri, modelfile_uri = mv.tags.get(TAG_GGUF_URI), mv.tags.get(TAG_MODELFILE_URI)
    if not gguf_uri or not modelfile_uri:
        raise InputError(f"{name} v{version} (champion) has no {TAG_GGUF_URI}/{TAG_MODELFILE_URI} tag")
    gguf = store.download_file(gguf_uri, dest / f"champion-v{version}.gguf", verify=True)
    if mv.tags.get(TAG_GGUF_SHA):
        from components.common.storage import sha256_file

        if sha256_file(gguf) != mv.tags[TAG_GGUF_SHA]:
            raise InputError(f"{name} v{version}: downloaded GGUF does not match the registry's sha256")
    modelfile = store.download_file(modelfile_uri, dest / f"champion-v{version}.Modelfile", verify=True)
    return {"version": version, "gguf": gguf, "modelfile": modelfile}


def register_version(client: Any, name: str, source: str, run_id: str, tags: dict[str, str]) -> str:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(
            name, tags={TAG_TASK: tags[TAG_TASK]}, description=f"prodtune {tags[TAG_TASK]} GGUF"
        )
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
            raise
    mv = client.create_model_version(name, source=source, run_id=run_id, tags=tags)
    return str(mv.version)


def promote(
    task: str, version: str, alias: str = CHAMPION, *, force: bool = False, settings: Settings | None = None
) -> dict[str, Any]:
    """Point `alias` at `version`; champion only on a gate-passed version unless `force`."""
    settings = settings or get_settings()
    client = _client(settings)
    name = model_name(task)
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException:
        raise InputError(f"{name} has no version {version}", field="version") from None
    if alias == CHAMPION and mv.tags.get(TAG_GATE) != "true" and not force:
        raise InputError(
            f"{name} v{version} did not pass the eval gate; use --force to make it champion anyway",
            field="version",
        )
    previous = _alias_version(client, name, alias)
    client.set_registered_model_alias(name, alias, str(version))
    return {"model_name": name, "alias": alias, "version": str(version), "previous": previous}


def _alias_version(client: Any, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def list_models(settings: Settings | None = None) -> list[dict[str, Any]]:
    """Every prodtune registered model with its versions, aliases, gate and GGUF URI."""
    client = _client(settings or get_settings())
    rows = []
    for name in MODEL_NAMES.values():
        from mlflow.exceptions import MlflowException

        try:
            rm = client.get_registered_model(name)
        except MlflowException:
            continue
        by_version: dict[str, list[str]] = {}
        for alias, version in (rm.aliases or {}).items():
            by_version.setdefault(str(version), []).append(alias)
        for mv in client.search_model_versions(f"name='{name}'"):
            rows.append(
                {
                    "model": name,
                    "version": str(mv.version),
                    "aliases": sorted(by_version.get(str(mv.version), [])),
                    "gate_passed": mv.tags.get(TAG_GATE),
                    "serve_level": mv.tags.get(TAG_LEVEL),
                    "gguf_uri": mv.tags.get(TAG_GGUF_URI),
                    "gguf_sha256": mv.tags.get(TAG_GGUF_SHA),
                    "run_id": mv.run_id,
                }
            )
    rows.sort(key=lambda r: (r["model"], int(r["version"])))
    return rows


def resolve(task: str, alias: str = CHAMPION, settings: Settings | None = None) -> dict[str, Any]:
    """The served GGUF of `alias` (URI, sha256) and the run's manifest, for serving and tests."""
    import mlflow

    settings = settings or get_settings()
    client = _client(settings)
    name = model_name(task)
    mv = client.get_model_version_by_alias(name, alias)
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            run_id=mv.run_id, artifact_path="model/manifest.json", dst_path=tmp
        )
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    return {
        "model_name": name,
        "version": str(mv.version),
        "gguf_uri": mv.tags.get(TAG_GGUF_URI),
        "gguf_sha256": mv.tags.get(TAG_GGUF_SHA),
        "manifest": manifest,
    }
