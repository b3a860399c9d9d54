"""Stage the champion GGUF + Modelfile of each serving role into IMPORT_DIR/<ollama name>/.

First init container of the Ollama pod (serve image). It resolves models exactly as the router
does (`serving.llm.resolve`, settings from the same PRODTUNE_LLM_* env): registry alias -> version
-> the version's `export-summary.json` -> GGUF S3 URI + sha256 (verified) and `modelfile_uri`; the
Ollama name is the one the router will ask for (`ollama_model` in the summary or tags, else
`<registered>:<alias>`). The Modelfile's FROM line is pointed at the local GGUF so the next init
container can run `ollama create`. When the summary lacks GGUF/Modelfile entries, the version's
`prodtune.gguf_uri` / `prodtune.modelfile_uri` tags (set by components/export/registry.py) are used,
and the Modelfile logged beside the version's source as a last resort. A version already staged
(stamp `.version`) is skipped, so a restart costs a few registry calls. S3 credentials come from env.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

FROM_LINE = re.compile(r"^[ \t]*FROM[ \t]+\S.*$", re.IGNORECASE | re.MULTILINE)


def rewrite_modelfile(text: str, gguf: str) -> str:
    """Point the single FROM line at `gguf`; TEMPLATE, PARAMETER stop etc. stay as exported."""
    if len(FROM_LINE.findall(text)) != 1:
        raise ValueError("Modelfile must contain exactly one FROM line")
    return FROM_LINE.sub(f"FROM {gguf}", text)


def stage(gguf: Path, modelfile_text: str, target: Path, version: str, name: str) -> None:
    """Build target/{model.gguf, Modelfile, .name, .version} in a side directory, then swap it in."""
    part = target.with_name(f".{target.name}.part")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    (part / "Modelfile").write_text(rewrite_modelfile(modelfile_text, "./model.gguf"))
    os.replace(gguf, part / "model.gguf")
    (part / ".name").write_text(name)
    (part / ".version").write_text(version)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(part, target)


def locate(summary: dict, tags: dict, quant: str, pick) -> tuple[str, str | None, str | None]:
    """(GGUF URI, sha256, Modelfile URI) from the export summary, else the version's tags.

    The summary is what serving.llm.resolve reads; the `prodtune.*` tags are what the export step's
    registry code sets on every version, so either source is enough.
    """
    try:
        uri, sha256, _ = pick(summary, quant)
    except Exception:  # no usable `gguf` entry in the summary: fall back to the tags
        uri, sha256 = tags.get("prodtune.gguf_uri"), tags.get("prodtune.gguf_sha256")
        if not uri:
            raise
    modelfile = summary.get("modelfile_uri") or tags.get("prodtune.modelfile_uri")
    return uri, sha256 or None, modelfile


def main() -> int:
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    from serving.llm.resolve import (
        ROLES,
        LlmSettings,
        fetch_gguf,
        pick_gguf,
        read_export_summary,
        resolve_model,
        s3_download,
    )

    import_dir = Path(os.environ["IMPORT_DIR"])
    import_dir.mkdir(parents=True, exist_ok=True)
    client = MlflowClient()
    settings = LlmSettings(backend="ollama")
    staged: set[str] = set()
    for role in ROLES:
        resolved = resolve_model(role, settings, client=client)  # the name and version the router uses
        if resolved.name in staged:  # both roles served by one model
            continue
        staged.add(resolved.name)
        target = import_dir / resolved.name.replace("/", "_")
        stamp = target / ".version"
        if stamp.exists() and stamp.read_text() == str(resolved.version):
            print(f"{resolved.name}: {resolved.source} already staged", flush=True)
            continue
        print(f"{resolved.name}: staging {resolved.source}", flush=True)
        version = client.get_model_version_by_alias(settings.registered(role), settings.alias)
        try:
            summary = read_export_summary(client, version)
        except Exception:  # InputError: no summary artifact and no resolver tags
            summary = {}
        uri, sha256, modelfile_uri = locate(summary, dict(version.tags or {}), settings.quant, pick_gguf)
        work = import_dir / f".{target.name}.download"
        shutil.rmtree(work, ignore_errors=True)
        gguf = fetch_gguf(uri, sha256, work / "model.gguf")
        if modelfile_uri:
            modelfile = s3_download(modelfile_uri, work / "Modelfile")
        else:  # the export step also logs it beside the model version's source (model/Modelfile)
            local = download_artifacts(artifact_uri=f"{version.source}/Modelfile", dst_path=str(work))
            modelfile = Path(local)
        stage(gguf, modelfile.read_text(), target, str(resolved.version), resolved.name)
        shutil.rmtree(work, ignore_errors=True)
        print(f"{resolved.name}: staged {uri}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
