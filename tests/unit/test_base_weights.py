"""Base weights: local dir, HF repo id (real huggingface_hub against a local fake hub), errors."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from components.common.base_weights import classify, localize, resolve_base_weights
from components.common.errors import InputError
from components.common.tracking import NullTracker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakes.hf_hub_server import FakeHub, FakeRepo

V1 = "1111111111111111111111111111111111111111"


def _files(tag: str) -> dict[str, bytes]:
    return {
        "config.json": json.dumps({"model_type": "llama", "tag": tag}).encode(),
        "model.safetensors": f"weights-{tag}".encode() * 64,
        "tokenizer.json": b'{"version": "1.0"}',
        "original/consolidated.00.pth": b"meta's copy, never downloaded",
        "README.md": b"# not needed",
    }


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from huggingface_hub import constants

    repos = {
        "acme/tiny": FakeRepo(_files("main")),
        "acme/gated": FakeRepo(_files("gated"), gated=True),
    }
    repos["acme/tiny"].refs["v1"] = V1
    with FakeHub(repos, token="hf_good") as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("PRODTUNE_BASE_CACHE", str(tmp_path / "cache"))
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.delenv("PRODTUNE_BASE_OFFLINE", raising=False)
        # The images set HF_HUB_OFFLINE=1; an explicit repo id must still download.
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
        yield server


def test_classify() -> None:
    assert classify("s3://bucket/base/qwen/") == ("s3", "s3://bucket/base/qwen/", None)
    assert classify("Qwen/Qwen2.5-7B-Instruct") == ("hf", "Qwen/Qwen2.5-7B-Instruct", None)
    assert classify("unsloth/Llama-3.2-3B-Instruct-bnb-4bit@abc123") == (
        "hf",
        "unsloth/Llama-3.2-3B-Instruct-bnb-4bit",
        "abc123",
    )
    assert classify("hf://org/name@v1.0") == ("hf", "org/name", "v1.0")
    assert classify("/models/qwen")[0] == "local"
    assert classify("./models/qwen")[0] == "local"


def test_an_existing_local_dir_wins_over_a_repo_id_lookalike(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "org" / "model").mkdir(parents=True)
    (tmp_path / "org" / "model" / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    weights = resolve_base_weights("org/model")
    assert weights.source == "local" and weights.path == Path("org/model")


def test_missing_local_dir_is_one_line_naming_the_model(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        resolve_base_weights(str(tmp_path / "nope"))
    assert str(tmp_path / "nope") in str(err.value) and "config.json" in str(err.value)
    assert "\n" not in str(err.value)


def test_hf_repo_downloads_once_with_revision_and_hashes(hub: FakeHub, tmp_path: Path) -> None:
    weights = resolve_base_weights("acme/tiny")
    assert weights.source == "hf"
    assert weights.revision == FakeRepo(_files("x")).commit  # the resolved commit, not "main"
    assert (weights.path / "config.json").is_file()
    # Only what a fine-tune reads: no original/*.pth, no README.
    assert sorted(weights.files) == ["config.json", "model.safetensors", "tokenizer.json"]
    expected = hashlib.sha256(_files("main")["model.safetensors"]).hexdigest()
    assert weights.files["model.safetensors"] == expected
    assert not any(".pth" in p for _, p, _ in hub.log)
    # Pinned to the commit, a second resolve needs no network at all (the hub is gone).
    hub.server.shutdown()
    again = resolve_base_weights(f"acme/tiny@{weights.revision}")
    assert again.path == weights.path and again.files == weights.files


def test_hf_tag_resolves_to_its_commit(hub: FakeHub) -> None:
    hub.repos["acme/tiny"].commit = V1  # the tag's commit is served with the same file list
    weights = resolve_base_weights("acme/tiny@v1")
    assert weights.revision == V1


@pytest.mark.parametrize(
    ("spec", "token", "cause"),
    [
        ("acme/tiny@no-such-branch", None, "revision 'no-such-branch' not found"),
        ("acme/missing", None, "repository not found"),
        ("acme/missing", "hf_good", "repository not found"),
        ("acme/gated", None, "gated repo: HF_TOKEN missing"),
        ("acme/gated", "hf_wrong", "HF_TOKEN rejected (HTTP 401)"),
    ],
)
def test_hf_errors_are_one_line_naming_model_and_cause(hub, monkeypatch, spec, token, cause) -> None:
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    with pytest.raises(InputError) as err:
        resolve_base_weights(spec)
    text = str(err.value)
    assert spec in text and cause in text and "\n" not in text, text


def test_gated_repo_downloads_with_the_token(hub, monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_good")
    weights = resolve_base_weights("acme/gated")
    assert json.loads((weights.path / "config.json").read_text())["tag"] == "gated"
    assert all(had_token for _, _, had_token in hub.log)


def test_base_offline_forbids_even_the_explicit_download(hub, monkeypatch) -> None:
    monkeypatch.setenv("PRODTUNE_BASE_OFFLINE", "1")
    with pytest.raises(InputError, match="not in the cache"):
        resolve_base_weights("acme/tiny")
    assert hub.log == []


def test_localize_swaps_in_the_local_dir_and_logs_provenance(hub) -> None:
    from pydantic import BaseModel

    class Cfg(BaseModel):
        base_model: str

    tracker = NullTracker()
    config, weights = localize(Cfg(base_model="acme/tiny"), tracker)
    assert config.base_model == str(weights.path)
    assert tracker.params["base_weights.spec"] == "acme/tiny"
    assert tracker.params["base_weights.revision"] == weights.revision
    assert "base-weights.json" in tracker.artifacts
