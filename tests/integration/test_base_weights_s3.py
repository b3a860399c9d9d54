"""`prodtune models stage` into the embedded SeaweedFS, then `base_model: s3://...` mirrors it once."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from components.common.base_weights import MANIFEST, resolve_base_weights
from components.common.errors import InputError
from components.common.storage import sha256_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakes.hf_hub_server import FakeHub, FakeRepo

pytestmark = pytest.mark.integration


def _model_dir(root: Path) -> Path:
    d = root / "tiny-model"
    (d / "sub").mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (d / "model.safetensors").write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    (d / "tokenizer.json").write_text('{"version": "1.0"}')
    (d / "sub" / "extra.txt").write_text("nested files keep their path")
    (d / ".cache").mkdir()
    (d / ".cache" / "lock").write_text("not a model file")
    return d


def _cli(*args: str):
    from pipelines.commands.export import register

    app = typer.Typer()
    register(app)
    return CliRunner().invoke(app, list(args))


def test_stage_then_mirror_once_checksummed(stack_env, s3_store, tmp_path: Path, monkeypatch) -> None:
    src = _model_dir(tmp_path)
    dest = f"s3://{s3_store.bucket}/base-models/tiny/"
    result = _cli("models", "stage", "--base", str(src), "--to", dest)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["files"] == 4 and out["uri"] == dest  # .cache/ is not staged
    manifest = json.loads(
        s3_store.client.get_object(Bucket=s3_store.bucket, Key=f"base-models/tiny/{MANIFEST}")["Body"].read()
    )
    assert manifest["files"]["model.safetensors"]["sha256"] == sha256_file(src / "model.safetensors")

    monkeypatch.setenv("PRODTUNE_BASE_CACHE", str(tmp_path / "cache"))
    weights = resolve_base_weights(dest)
    assert weights.source == "s3" and weights.revision  # the manifest's sha256
    for name in ("config.json", "model.safetensors", "tokenizer.json", "sub/extra.txt"):
        assert sha256_file(weights.path / name) == sha256_file(src / name)
    # Mirrored once: with the weights gone from S3 (manifest kept), the cached copy is used.
    s3_store.client.delete_object(Bucket=s3_store.bucket, Key="base-models/tiny/model.safetensors")
    assert resolve_base_weights(dest).path == weights.path


def test_a_tampered_object_fails_with_the_model_and_file_named(
    stack_env, s3_store, tmp_path, monkeypatch
) -> None:
    src = _model_dir(tmp_path)
    dest = f"s3://{s3_store.bucket}/base-models/tampered/"
    assert _cli("models", "stage", "--base", str(src), "--to", dest).exit_code == 0
    # Someone overwrites a weight file in place (with a fresh sha256 of its own bytes).
    (tmp_path / "evil.safetensors").write_bytes(b"not the weights")
    s3_store.upload_file(tmp_path / "evil.safetensors", "base-models/tampered/model.safetensors")
    monkeypatch.setenv("PRODTUNE_BASE_CACHE", str(tmp_path / "fresh-cache"))
    with pytest.raises(InputError) as err:
        resolve_base_weights(dest)
    assert dest in str(err.value) and "model.safetensors does not match the manifest" in str(err.value)
    assert not any((tmp_path / "fresh-cache").rglob("model.safetensors"))  # nothing half-mirrored


def test_missing_prefix_is_one_line(stack_env, s3_store, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PRODTUNE_BASE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(InputError, match=r"no prodtune-manifest\.json") as err:
        resolve_base_weights(f"s3://{s3_store.bucket}/base-models/never-staged/")
    assert "prodtune models stage" in str(err.value) and "\n" not in str(err.value)


def test_stage_an_hf_repo_into_s3(stack_env, s3_store, tmp_path, monkeypatch) -> None:
    from huggingface_hub import constants

    files = {"config.json": b'{"model_type": "qwen2"}', "model.safetensors": b"w" * 5000}
    with FakeHub({"acme/tiny": FakeRepo(files)}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("PRODTUNE_BASE_CACHE", str(tmp_path / "hf-cache"))
        dest = f"s3://{s3_store.bucket}/base-models/acme-tiny/"
        result = _cli("models", "stage", "--base", "acme/tiny", "--to", dest)
    assert result.exit_code == 0, result.output
    # huggingface_hub's progress bars go to stderr; stdout is the one JSON line.
    line = result.stdout.strip()
    assert json.loads(line)["revision"] == FakeRepo(files).commit
    monkeypatch.setenv("PRODTUNE_BASE_CACHE", str(tmp_path / "pod-cache"))
    weights = resolve_base_weights(dest)
    assert (weights.path / "model.safetensors").read_bytes() == files["model.safetensors"]
