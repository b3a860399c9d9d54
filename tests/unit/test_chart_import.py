"""The Ollama model import of the chart (serving/chart/files): staging logic and the create script.

fetch_models.py's pure parts run here as they do in the pod; create_models.sh runs against a fake
`ollama` executable (a small shell script on PATH that records its calls), so the skip/create/
re-download decisions are exercised without an Ollama server.
"""

from __future__ import annotations

import importlib.util
import os
import stat
import subprocess
from pathlib import Path

import pytest

FILES = Path(__file__).resolve().parents[2] / "serving" / "chart" / "files"


def _load_fetch_models():
    spec = importlib.util.spec_from_file_location("chart_fetch_models", FILES / "fetch_models.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fm = _load_fetch_models()

MODELFILE = """FROM /out/export/qa/prodtune-qa-Q4_K_M.gguf
TEMPLATE \"\"\"{{ if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}<|im_start|>user
{{ .Prompt }}<|im_end|>
<|im_start|>assistant
\"\"\"
PARAMETER stop "<|im_end|>"
PARAMETER stop "<|endoftext|>"
PARAMETER temperature 0.7
"""


def test_rewrite_modelfile_changes_only_the_from_line() -> None:
    out = fm.rewrite_modelfile(MODELFILE, "./model.gguf")
    assert out.splitlines()[0] == "FROM ./model.gguf"
    assert out.splitlines()[1:] == MODELFILE.splitlines()[1:]
    assert (
        fm.rewrite_modelfile("  from x.gguf\nPARAMETER a 1\n", "./m.gguf") == "FROM ./m.gguf\nPARAMETER a 1\n"
    )


@pytest.mark.parametrize("text", ["PARAMETER stop x\n", "FROM a.gguf\nFROM b.gguf\n"])
def test_rewrite_modelfile_refuses_zero_or_two_from_lines(text: str) -> None:
    with pytest.raises(ValueError, match="exactly one FROM"):
        fm.rewrite_modelfile(text, "./model.gguf")


def test_stage_replaces_an_older_version_atomically(tmp_path: Path) -> None:
    target = tmp_path / "import" / "prodtune-qa:champion"
    for version, payload in (("3", b"old"), ("4", b"new")):
        gguf = tmp_path / f"dl-{version}.gguf"
        gguf.write_bytes(payload)
        fm.stage(gguf, MODELFILE, target, version, "prodtune-qa:champion")
    assert (target / "model.gguf").read_bytes() == b"new"
    assert (target / ".version").read_text() == "4"
    assert (target / ".name").read_text() == "prodtune-qa:champion"
    assert (target / "Modelfile").read_text().startswith("FROM ./model.gguf\n")
    assert sorted(p.name for p in target.parent.iterdir()) == ["prodtune-qa:champion"]  # no .part left


def test_locate_prefers_the_summary_and_falls_back_to_export_tags() -> None:
    summary = {
        "gguf": {"Q4_K_M": {"uri": "s3://b/q4.gguf", "sha256": "aa"}},
        "modelfile_uri": "s3://b/Modelfile",
    }
    tags = {
        "prodtune.gguf_uri": "s3://b/tag.gguf",
        "prodtune.gguf_sha256": "bb",
        "prodtune.modelfile_uri": "s3://b/M2",
    }

    def pick(s: dict, quant: str) -> tuple[str, str | None, str]:
        if "gguf" not in s:
            raise LookupError("no gguf")
        entry = s["gguf"][quant]
        return entry["uri"], entry["sha256"], quant

    assert fm.locate(summary, tags, "Q4_K_M", pick) == ("s3://b/q4.gguf", "aa", "s3://b/Modelfile")
    assert fm.locate({}, tags, "Q4_K_M", pick) == ("s3://b/tag.gguf", "bb", "s3://b/M2")
    assert fm.locate({}, {"prodtune.gguf_uri": "s3://b/t.gguf"}, "Q4_K_M", pick) == (
        "s3://b/t.gguf",
        None,
        None,
    )
    with pytest.raises(LookupError):
        fm.locate({}, {}, "Q4_K_M", pick)


FAKE_OLLAMA = """#!/bin/sh
# Fake ollama: `serve` idles, `create NAME -f FILE` records NAME (and the FROM line), `show NAME`
# succeeds only for created names, `list` succeeds once "serving".
state="$FAKE_OLLAMA_STATE"
case "$1" in
  serve) echo "$OLLAMA_HOST" > "$state/serve-host"; exec sleep 30 ;;
  list) cat "$state/created" 2>/dev/null; exit 0 ;;
  show) grep -qx "$2" "$state/created" 2>/dev/null ;;
  create)
    [ "$3" = "-f" ] || exit 9
    grep '^FROM ' "$4" > "$state/from-$2"
    [ -f model.gguf ] || exit 8
    echo "$2" >> "$state/created"; echo "$2" >> "$state/calls" ;;
  *) exit 7 ;;
esac
"""


@pytest.fixture()
def fake_ollama(tmp_path: Path) -> dict[str, str]:
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    exe = bin_dir / "ollama"
    exe.write_text(FAKE_OLLAMA)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_OLLAMA_STATE": str(state),
        "IMPORT_DIR": str(tmp_path / "import"),
    }


def run_create(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", str(FILES / "create_models.sh")],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_create_models_creates_once_per_version_and_frees_the_gguf(
    tmp_path: Path, fake_ollama: dict[str, str]
) -> None:
    state = Path(fake_ollama["FAKE_OLLAMA_STATE"])
    import_dir = Path(fake_ollama["IMPORT_DIR"])
    for name in ("prodtune-describer:champion", "prodtune-qa:champion"):
        gguf = tmp_path / f"{name}.gguf"
        gguf.write_bytes(b"GGUF")
        fm.stage(gguf, MODELFILE, import_dir / name, "7", name)

    first = run_create(fake_ollama)
    assert first.returncode == 0, first.stderr + first.stdout
    assert (state / "serve-host").read_text().strip() == "127.0.0.1:11434"  # loopback only
    assert sorted((state / "calls").read_text().split()) == [
        "prodtune-describer:champion",
        "prodtune-qa:champion",
    ]
    assert (state / "from-prodtune-qa:champion").read_text().strip() == "FROM ./model.gguf"
    for name in ("prodtune-describer:champion", "prodtune-qa:champion"):
        assert (import_dir / name / ".created").read_text().strip() == "7"
        assert not (import_dir / name / "model.gguf").exists()  # Ollama holds its own blob now

    second = run_create(fake_ollama)
    assert second.returncode == 0, second.stderr
    assert len((state / "calls").read_text().split()) == 2  # unchanged version: nothing re-created
    assert "already created" in second.stdout


def test_create_models_forces_a_fresh_download_when_ollama_lost_the_model(
    tmp_path: Path, fake_ollama: dict[str, str]
) -> None:
    state = Path(fake_ollama["FAKE_OLLAMA_STATE"])
    import_dir = Path(fake_ollama["IMPORT_DIR"])
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    fm.stage(gguf, MODELFILE, import_dir / "prodtune-qa:champion", "7", "prodtune-qa:champion")
    assert run_create(fake_ollama).returncode == 0
    (state / "created").unlink()  # the model store was wiped, the staged GGUF is already gone

    lost = run_create(fake_ollama)
    assert lost.returncode == 1
    assert "re-downloading" in lost.stderr
    # Stamps removed: fetch_models.py will download this version again on the pod's restart.
    assert not (import_dir / "prodtune-qa:champion" / ".version").exists()


@pytest.mark.integration
@pytest.mark.slow  # starts SeaweedFS + MLflow: 1-2 min on 2 shared cores
def test_fetch_models_stages_what_the_export_step_registered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The init container's script against a real MLflow + S3 (the embedded stack), with model
    versions registered by the export step's own `registry.publish`."""
    import json
    import sys

    from components.common.settings import Settings
    from components.export import registry
    from components.export.core import ExportConfig
    from pipelines.embedded.stack import SHADOWING_VARS, EmbeddedStack

    stack = EmbeddedStack.with_free_ports(tmp_path / "home")
    stack.start()
    try:
        for name in SHADOWING_VARS:
            monkeypatch.delenv(name, raising=False)
        for name, value in stack.env().items():
            monkeypatch.setenv(name, value)
        ggufs = {}
        for task in ("describer", "qa"):
            out = tmp_path / f"out-{task}"
            out.mkdir()
            gguf_name = f"prodtune-{task}-Q4_K_M.gguf"
            ggufs[task] = b"GGUF" + task.encode() * 4096
            (out / gguf_name).write_bytes(ggufs[task])
            (out / "Modelfile").write_text(
                MODELFILE.replace("/out/export/qa/prodtune-qa-Q4_K_M.gguf", gguf_name)
            )
            summary = {
                "task": task,
                "serve_level": "Q4_K_M",
                "files": {"Q4_K_M": gguf_name},
                "eval_gate": {"passed": True},
                "levels": {},
            }
            (out / "export-summary.json").write_text(json.dumps(summary))
            registry.publish(out, summary, None, Settings(), ExportConfig())

        import_dir = tmp_path / "import"
        # In the pod prodtune is installed in the image; here the checkout stands in for it.
        root = str(FILES.parents[2])
        env = {**os.environ, "IMPORT_DIR": str(import_dir), "HOME": str(tmp_path), "PYTHONPATH": root}
        cmd = [sys.executable, str(FILES / "fetch_models.py")]
        first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert first.returncode == 0, first.stderr[-3000:]
        for task in ("describer", "qa"):
            staged = import_dir / f"prodtune-{task}:champion"
            assert (staged / "model.gguf").read_bytes() == ggufs[task]  # sha256-verified download
            assert (staged / "Modelfile").read_text() == fm.rewrite_modelfile(MODELFILE, "./model.gguf")
            assert (staged / ".name").read_text() == f"prodtune-{task}:champion"
            assert (staged / ".version").read_text() == "1"
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert second.returncode == 0, second.stderr[-3000:]
        assert second.stdout.count("already staged") == 2
    finally:
        stack.stop()
