"""components/common: config loading, env expansion, atomic writes, errors, settings, null tracking."""

from __future__ import annotations

import pytest
from pydantic import Field

from components.common.atomic import atomic_open, write_json
from components.common.config import StepConfig, expand_env, load_config
from components.common.errors import InputError
from components.common.settings import Settings
from components.common.tracking import NullTracker, step_run


class Demo(StepConfig):
    n: int = Field(default=1, gt=0)
    path: str = "x"


def test_load_config_reads_yaml_and_applies_overrides(tmp_path):
    cfg = tmp_path / "demo.yaml"
    cfg.write_text("n: 3\npath: a\n")
    assert load_config(Demo, cfg, {"path": "b", "n": None}) == Demo(n=3, path="b")


def test_load_config_errors_name_file_and_field(tmp_path):
    cfg = tmp_path / "demo.yaml"
    cfg.write_text("n: -1\n")
    with pytest.raises(InputError) as err:
        load_config(Demo, cfg)
    assert err.value.field == "n" and str(cfg) in str(err.value)
    cfg.write_text("nn: 2\n")
    with pytest.raises(InputError) as err:
        load_config(Demo, cfg)
    assert err.value.field == "nn"
    cfg.write_text("n: [1,\n")
    with pytest.raises(InputError, match="invalid YAML"):
        load_config(Demo, cfg)
    with pytest.raises(InputError, match="not found"):
        load_config(Demo, tmp_path / "missing.yaml")


def test_expand_env(monkeypatch):
    monkeypatch.setenv("PT_A", "/models")
    monkeypatch.delenv("PT_B", raising=False)
    assert expand_env({"p": "${PT_A}/qwen", "q": ["${PT_B:-/default}/x"]}) == {
        "p": "/models/qwen",
        "q": ["/default/x"],
    }
    with pytest.raises(InputError) as err:
        expand_env("${PT_B}/x")
    assert err.value.field == "PT_B"


def test_expand_env_follows_the_shell_for_empty_variables(monkeypatch):
    monkeypatch.setenv("PT_EMPTY", "")
    monkeypatch.delenv("PT_UNSET", raising=False)
    # ${V:-d}: default when unset OR empty; ${V-d}: default only when unset; ${V}: "" when empty.
    assert expand_env("${PT_EMPTY:-/d}") == "/d"
    assert expand_env("${PT_EMPTY-/d}") == ""
    assert expand_env("${PT_UNSET-/d}") == "/d"
    assert expand_env("${PT_EMPTY}") == ""
    assert expand_env("a${PT_UNSET:-~}b").startswith("a/")  # ~ in a default is this process's home
    assert expand_env("${PT_UNSET}", missing="keep") == "${PT_UNSET}"
    assert expand_env("${PT_EMPTY:-x}", {"PT_EMPTY": "set"}) == "set"


def test_configs_expand_where_they_are_validated(monkeypatch, tmp_path):
    from components.common.config import runtime_config_json

    cfg = tmp_path / "demo.yaml"
    cfg.write_text("n: 2\npath: ${PT_WHERE:-/default}/m\n")
    monkeypatch.setenv("PT_WHERE", "/compile-machine")
    raw = runtime_config_json(Demo, cfg)
    assert "compile-machine" not in raw and "${PT_WHERE:-/default}" in raw
    monkeypatch.setenv("PT_WHERE", "/pod")
    assert Demo.model_validate_json(raw).path == "/pod/m"
    assert load_config(Demo, cfg).path == "/pod/m"
    cfg.write_text("path: ${PT_NEVER_SET}\n")
    monkeypatch.delenv("PT_NEVER_SET", raising=False)
    assert "${PT_NEVER_SET}" in runtime_config_json(Demo, cfg)  # left for the pod
    with pytest.raises(InputError) as err:
        load_config(Demo, cfg)
    assert err.value.field == "PT_NEVER_SET" and str(cfg) in str(err.value)


def test_atomic_open_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_open(target) as fh:
        fh.write("half")
        raise RuntimeError("crash")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    write_json(target, {"a": 1})
    assert target.read_text().strip() == '{\n  "a": 1\n}'


def test_input_error_format():
    assert str(InputError("bad", path="f.json", line=3, field="title")) == "f.json:3 (field 'title'): bad"
    assert str(InputError("bad")) == "bad"


def test_settings_hide_secrets(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5050")
    settings = Settings()
    assert settings.aws_secret_access_key.get_secret_value() == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(settings) and "s3cr3t-value" not in str(settings)
    assert settings.mlflow_tracking_uri == "http://127.0.0.1:5050"


def test_step_run_without_tracking_uri_is_a_null_tracker(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PRODTUNE_MLFLOW_TRACKING_URI", raising=False)
    with step_run("demo", {"a": 1}) as tracker:
        tracker.log_metrics({"m": 2})
    assert isinstance(tracker, NullTracker)
    assert tracker.params == {"a": 1} and tracker.metrics == {"m": 2.0}


def test_atomic_dir_replaces_whole_or_not_at_all(tmp_path):
    from components.common.atomic import atomic_dir

    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "a.bin").write_text("v1")
    assert (target / "a.bin").read_text() == "v1"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "b.bin").write_text("half")
        raise RuntimeError("crash")
    assert sorted(p.name for p in target.iterdir()) == ["a.bin"]  # old version intact
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temp dir left behind
    with atomic_dir(target) as tmp:
        (tmp / "c.bin").write_text("v2")
    assert sorted(p.name for p in target.iterdir()) == ["c.bin"]
