"""KFP v2 component: fine-tune output -> GGUF + Modelfile, fidelity gate, S3 + MLflow (see core.py)."""

from kfp import dsl
from kfp.dsl import Input, Model, Output

from components.common.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def export(model: Input[Model], config_json: str, exported: Output[Model]) -> None:
    from components.export.core import ExportConfig, run_export

    config = ExportConfig.model_validate_json(config_json)
    summary = run_export(model.path, exported.path, config)
    registry = summary.get("registry", {})
    exported.metadata.update(
        {
            "task": summary["task"],
            "serve_level": summary["serve_level"],
            "gate_passed": bool(summary["eval_gate"].get("passed")),
            "registered_model": registry.get("model_name", ""),
            "version": registry.get("version", ""),
            "gguf_uri": registry.get("manifest", {})
            .get(summary["files"][summary["serve_level"]], {})
            .get("uri", ""),
        }
    )
