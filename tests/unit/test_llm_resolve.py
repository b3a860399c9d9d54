"""Model resolution from a real (file-backed) MLflow registry; S3 replaced by a local directory."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from components.common.errors import InputError
from serving.llm.resolve import LlmSettings, fetch_gguf, pick_gguf, resolve_model

GGUF_BYTES = b"GGUF\x03\x00\x00\x00fake-model-bytes"


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A file-store MLflow registry laid out as components/export/registry.py publishes:
    prodtune-qa v1 (alias champion), run artifacts model/{export-summary,manifest}.json, prodtune.* tags."""
    import mlflow
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a server is overkill for a unit test
    uri = (tmp_path / "mlruns").as_uri()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = client.create_run(client.create_experiment("prodtune"))
    run_id = run.info.run_id
    prefix = f"s3://prodtune/models/qa/{run_id}"
    sha = hashlib.sha256(GGUF_BYTES).hexdigest()
    summary = {
        "task": "qa",
        "serve_level": "Q4_K_M",
        "files": {"F16": "qa-F16.gguf", "Q8_0": "qa-Q8_0.gguf", "Q4_K_M": "qa-Q4_K_M.gguf"},
        "modelfile": "Modelfile",
        "stops": ["<|im_end|>", "<|endoftext|>"],
    }
    manifest = {
        "qa-F16.gguf": {"uri": f"{prefix}/qa-F16.gguf", "sha256": "1" * 64, "size": 10},
        "qa-Q8_0.gguf": {"uri": f"{prefix}/qa-Q8_0.gguf", "sha256": sha, "size": 10},
        "qa-Q4_K_M.gguf": {"uri": f"{prefix}/qa-Q4_K_M.gguf", "sha256": sha, "size": 10},
        "Modelfile": {"uri": f"{prefix}/Modelfile", "sha256": "2" * 64, "size": 10},
    }
    client.log_dict(run_id, summary, "model/export-summary.json")
    client.log_dict(run_id, manifest, "model/manifest.json")
    tags = {
        "prodtune.task": "qa",
        "prodtune.gguf_uri": f"{prefix}/qa-Q4_K_M.gguf",
        "prodtune.gguf_sha256": sha,
        "prodtune.serve_level": "Q4_K_M",
        "prodtune.modelfile_uri": f"{prefix}/Modelfile",
    }
    client.create_registered_model("prodtune-qa")
    source = f"{client.get_run(run_id).info.artifact_uri}/model"
    mv = client.create_model_version("prodtune-qa", source, run_id, tags=tags)
    client.set_registered_model_alias("prodtune-qa", "champion", mv.version)
    mlflow.set_tracking_uri(uri)  # conftest's autouse fixture restores it after the test
    return client


def fake_s3(tmp_path: Path) -> tuple[list[str], object]:
    bucket = tmp_path / "s3"
    calls: list[str] = []

    def download(uri: str, dest: Path) -> Path:  # any key of the fake bucket holds the test bytes
        calls.append(uri)
        (bucket / "obj").parent.mkdir(parents=True, exist_ok=True)
        (bucket / "obj").write_bytes(GGUF_BYTES)
        shutil.copyfile(bucket / "obj", dest)
        return dest

    return calls, download


def test_registry_alias_downloads_the_served_gguf_once(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    calls, download = fake_s3(tmp_path)
    settings = LlmSettings(cache_dir=tmp_path / "cache")
    res = resolve_model("qa", settings, client=registry, download=download)  # type: ignore[arg-type]
    assert res.backend == "llamacpp" and res.version == "1"
    assert res.source == "models:/prodtune-qa@champion (v1)"
    assert res.path == tmp_path / "cache/prodtune-qa/v1/qa-Q4_K_M.gguf"
    assert res.path.read_bytes() == GGUF_BYTES
    assert res.stops == ("<|im_end|>", "<|endoftext|>")  # the exported Modelfile's stops
    again = resolve_model("qa", settings, client=registry, download=download)  # type: ignore[arg-type]
    assert again.path == res.path and len(calls) == 1  # cached
    assert calls[0].endswith("/qa-Q4_K_M.gguf")


def test_registry_gives_other_levels_from_the_manifest(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, download = fake_s3(tmp_path)
    res = resolve_model(
        "qa", LlmSettings(cache_dir=tmp_path, quant="q8_0"), client=registry, download=download
    )  # type: ignore[arg-type]
    assert res.path is not None and res.path.name == "qa-Q8_0.gguf" and res.name == "prodtune-qa:v1-Q8_0"
    with pytest.raises(InputError, match="checksum mismatch"):  # F16's recorded sha256 is not the bytes'
        resolve_model("qa", LlmSettings(cache_dir=tmp_path, quant="F16"), client=registry, download=download)  # type: ignore[arg-type]


def test_read_export_summary_normalizes_the_exporter_layout(registry) -> None:  # type: ignore[no-untyped-def]
    from serving.llm.resolve import read_export_summary

    summary = read_export_summary(registry, registry.get_model_version_by_alias("prodtune-qa", "champion"))
    assert sorted(summary["gguf"]) == ["F16", "Q4_K_M", "Q8_0"]
    assert summary["serve_level"] == "Q4_K_M" and summary["modelfile_uri"].endswith("/Modelfile")


def test_registry_for_ollama_gives_the_ollama_model_name(registry) -> None:  # type: ignore[no-untyped-def]
    res = resolve_model("qa", LlmSettings(backend="ollama"), client=registry)
    assert (res.backend, res.name, res.path) == ("ollama", "prodtune-qa:champion", None)


def test_missing_alias_is_a_clear_error(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match="no version of 'prodtune-describer' has alias 'champion'"):
        resolve_model("describer", LlmSettings(cache_dir=tmp_path), client=registry)


def test_explicit_path_and_name_win(tmp_path: Path) -> None:
    gguf = tmp_path / "my.gguf"
    gguf.write_bytes(GGUF_BYTES)
    res = resolve_model("qa", LlmSettings(qa_path=gguf), client=object())
    assert (res.path, res.source, res.name) == (gguf, "path", "my")
    res = resolve_model("describer", LlmSettings(backend="ollama", describer_name="x:1"), client=object())
    assert (res.name, res.source) == ("x:1", "name")
    with pytest.raises(InputError, match="not found"):
        resolve_model("qa", LlmSettings(qa_path=tmp_path / "missing.gguf"))


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PRODTUNE_LLM_BACKEND", "ollama")
    monkeypatch.setenv("OLLAMA_HOST", "http://ollama:11434")
    monkeypatch.setenv("PRODTUNE_LLM_QA_NAME", "prodtune-qa:champion")
    s = LlmSettings()
    assert (s.backend, s.ollama_host, s.name("qa"), s.name("describer")) == (
        "ollama",
        "http://ollama:11434",
        "prodtune-qa:champion",
        None,
    )


@pytest.mark.parametrize(
    ("summary", "quant", "expected"),
    [
        (
            {"gguf": {"q8_0": {"uri": "s3://b/a8"}, "Q4_K_M": {"uri": "s3://b/a4"}}},
            "Q8_0",
            ("s3://b/a8", "Q8_0"),
        ),
        ({"gguf": {"Q8_0": {"uri": "s3://b/a8"}, "F16": "s3://b/f"}}, None, ("s3://b/a8", "Q8_0")),
        ({"gguf": {"Q8_0": "s3://b/a8", "F16": "s3://b/f"}, "serve_level": "f16"}, None, ("s3://b/f", "F16")),
        ({"gguf": {"Q8_0": "s3://b/a8"}, "serve_level": "F16"}, "Q2_K", ("s3://b/a8", "Q8_0")),
        ({"gguf": [{"quant": "f16", "uri": "s3://b/f"}]}, "Q4_K_M", ("s3://b/f", "F16")),
        ({"gguf": "s3://b/only.gguf"}, None, ("s3://b/only.gguf", "?")),
    ],
)
def test_pick_gguf_is_tolerant(summary: dict, quant: str | None, expected: tuple[str, str]) -> None:
    uri, _, chosen = pick_gguf(summary, quant)
    assert (uri, chosen) == expected


def test_summary_in_the_assumed_shape_and_old_tags_are_read(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from serving.llm.resolve import read_export_summary

    class Client:  # artifacts: only the root export-summary.json in the assumed shape
        def download_artifacts(self, run_id: str, path: str, dst: str) -> str:
            if path != "export-summary.json":
                raise OSError(path)
            out = Path(dst) / path
            out.write_text(json.dumps({"gguf": {"Q4_K_M": {"uri": "s3://b/x.gguf"}}, "ollama_model": "qa:7"}))
            return str(out)

    version = SimpleNamespace(
        run_id="r", source="runs:/r/model", tags={"gguf.Q8_0.uri": "s3://b/y.gguf"}, name="m"
    )
    summary = read_export_summary(Client(), version)
    assert summary["gguf"] == {"Q4_K_M": {"uri": "s3://b/x.gguf"}, "Q8_0": {"uri": "s3://b/y.gguf"}}
    assert summary["ollama_model"] == "qa:7"
    bare = SimpleNamespace(run_id=None, source="", tags={}, name="m", version="3")
    with pytest.raises(InputError, match="names no GGUF"):
        read_export_summary(Client(), bare)


def test_pick_gguf_without_files_is_an_error() -> None:
    with pytest.raises(InputError, match="names no GGUF"):
        pick_gguf({"gguf": {}}, "Q4_K_M")


def test_fetch_refuses_a_checksum_mismatch_and_refetches_a_stale_cache(tmp_path: Path) -> None:
    dest = tmp_path / "m.gguf"

    def download(uri: str, d: Path) -> Path:
        d.write_bytes(GGUF_BYTES)
        return d

    with pytest.raises(InputError, match="checksum mismatch"):
        fetch_gguf("s3://b/m.gguf", "f" * 64, dest, download)
    assert not dest.exists() and not list(tmp_path.iterdir())
    dest.write_bytes(b"stale")
    fetch_gguf("s3://b/m.gguf", hashlib.sha256(GGUF_BYTES).hexdigest(), dest, download)
    assert dest.read_bytes() == GGUF_BYTES
