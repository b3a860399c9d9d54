"""Fine-tune recipes: the four YAMLs validate; bad values fail with the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.common.config import CONFIG_DIR, load_config
from components.common.errors import InputError
from components.finetune.core import FinetuneConfig, flat_params, resolve_backend

RECIPES = ["describer.yaml", "qa.yaml", "local/describer.yaml", "local/qa.yaml"]


@pytest.mark.parametrize("name", RECIPES)
def test_recipes_validate_and_show_their_command(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PRODTUNE_MODELS_DIR", raising=False)
    path = CONFIG_DIR / name
    cfg = load_config(FinetuneConfig, path)
    assert cfg.task in name
    header = path.read_text(encoding="utf-8").split("\ntask:")[0]
    assert f"prodtune finetune --config pipelines/configs/{name}" in header
    assert "${" not in cfg.base_model  # expanded


def test_production_recipes_use_4bit_gpu_bases(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DESCRIBER", "QA"):
        monkeypatch.delenv(f"PRODTUNE_{name}_BASE", raising=False)
        monkeypatch.delenv(f"PRODTUNE_{name}_MERGE_BASE", raising=False)
    d = load_config(FinetuneConfig, CONFIG_DIR / "describer.yaml")
    q = load_config(FinetuneConfig, CONFIG_DIR / "qa.yaml")
    # HF repo ids, downloaded in the pod (components/common/base_weights.py); merged onto 16-bit.
    assert d.base_model == "unsloth/Qwen2.5-7B-Instruct-bnb-4bit"
    assert q.base_model == "unsloth/Llama-3.2-3B-Instruct-bnb-4bit"
    assert (d.merge_base_model, q.merge_base_model) == (
        "Qwen/Qwen2.5-7B-Instruct",
        "meta-llama/Llama-3.2-3B-Instruct",
    )
    monkeypatch.setenv("PRODTUNE_QA_BASE", "s3://weights/llama-3.2-3b-bnb/")
    monkeypatch.setenv("PRODTUNE_QA_MERGE_BASE", "")  # set but empty: dequantize the bnb base instead
    q = load_config(FinetuneConfig, CONFIG_DIR / "qa.yaml")
    assert q.base_model == "s3://weights/llama-3.2-3b-bnb/" and not q.merge_base_model
    for cfg in (d, q):
        assert cfg.quantization.load_in_4bit and cfg.per_device_batch_size * cfg.grad_accum == 8


def test_local_recipes_are_small_cpu_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PRODTUNE_MODELS_DIR", raising=False)
    for name in ("local/describer.yaml", "local/qa.yaml"):
        cfg = load_config(FinetuneConfig, CONFIG_DIR / name)
        assert cfg.device == "cpu" and cfg.backend == "hf"
        assert cfg.max_steps is not None  # a fixed length, and minutes on 2 cores: at most 64k tokens
        assert cfg.max_steps * cfg.per_device_batch_size * cfg.grad_accum * cfg.max_seq_length <= 65_536
        assert cfg.base_model == str(Path.home() / ".cache/prodtune/models/smollm2-135m-instruct")


def test_local_and_production_share_one_schema() -> None:
    # Same keys, only values differ.
    import yaml

    for task in ("describer", "qa"):
        prod = yaml.safe_load((CONFIG_DIR / f"{task}.yaml").read_text())
        local = yaml.safe_load((CONFIG_DIR / f"local/{task}.yaml").read_text())
        assert set(prod) == set(local)
        assert set(prod["lora"]) == set(local["lora"]) and set(prod["eval"]) == set(local["eval"])


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "ft.yaml"
    p.write_text(text, encoding="utf-8")
    return p


BASE = "task: qa\nbase_model: /m\nmax_steps: 3\n"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ("lora:\n  r: 0\n", "lora.r"),
        ("lora:\n  target_modules: []\n", "lora.target_modules"),
        ("lora:\n  rank: 8\n", "lora.rank"),
        ("learning_rate: 2\n", "learning_rate"),
        ("lr_scheduler: exotic\n", "lr_scheduler"),
        ("backend: llamafactory\n", "backend"),
        ("eval:\n  max_new_tokens: 0\n", "eval.max_new_tokens"),
        ("per_device_batchsize: 2\n", "per_device_batchsize"),
    ],
)
def test_bad_values_name_the_field(tmp_path: Path, extra: str, field: str) -> None:
    with pytest.raises(InputError) as err:
        load_config(FinetuneConfig, _write(tmp_path, BASE + extra))
    assert err.value.field == field
    assert str(tmp_path / "ft.yaml") in str(err.value)


def test_length_is_required_and_warmup_is_one_of(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="num_epochs or max_steps"):
        load_config(FinetuneConfig, _write(tmp_path, "task: qa\nbase_model: /m\n"))
    with pytest.raises(InputError, match="warmup_ratio or warmup_steps"):
        load_config(FinetuneConfig, _write(tmp_path, BASE + "warmup_ratio: 0.1\nwarmup_steps: 3\n"))


def test_unknown_task_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        load_config(FinetuneConfig, _write(tmp_path, "task: summarizer\nbase_model: /m\nmax_steps: 3\n"))
    assert err.value.field == "task"


def test_overrides_revalidate() -> None:
    cfg = FinetuneConfig(task="qa", base_model="/m", num_epochs=1)
    assert cfg.with_overrides(max_steps=7, base_model=None).max_steps == 7
    with pytest.raises(ValueError):
        cfg.with_overrides(max_steps=0)


def test_flat_params_are_dotted_scalars() -> None:
    params = flat_params(FinetuneConfig(task="qa", base_model="/m", max_steps=3))
    assert params["lora.r"] == 16 and params["eval.max_new_tokens"] == 128
    assert params["lora.target_modules"].startswith("q_proj,")
    assert all(not isinstance(v, dict | list) for v in params.values())


def test_backend_resolution_on_cpu() -> None:
    cfg = FinetuneConfig(task="qa", base_model="/m", max_steps=3)
    assert resolve_backend(cfg, "cpu") == "hf"
    with pytest.raises(InputError, match="CUDA") as err:
        resolve_backend(cfg.with_overrides(backend="unsloth"), "cpu")
    assert err.value.field == "backend"
