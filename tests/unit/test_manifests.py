"""manifests/ (MLflow, S3, PostgreSQL, RBAC, Secret templates), rendered with `kubectl kustomize`
and validated offline against the Kubernetes 1.32 schemas; then cross-checked: every Secret key a
pod reads exists in a template, URLs point at rendered Services, MLflow accepts its own in-cluster
host names, and every pod meets the restricted Pod Security profile the namespace enforces.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.util
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
SECRET_TEMPLATES = sorted((MANIFESTS / "secrets").glob("*.example.yaml"))
K8S_VERSION = "1.32.0"
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate",
    reason="kubernetes-validate not installed (pip install kubernetes-validate==1.37.0)",
)


@pytest.fixture(scope="module")
def kubectl(tools: Path) -> Path:
    return tools / "kubectl"


@pytest.fixture(scope="module")
def docs(kubectl: Path) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [str(kubectl), "kustomize", str(MANIFESTS)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@pytest.fixture(scope="module")
def templates() -> dict[str, dict[str, str]]:
    """Secret name -> {key: placeholder value} from manifests/secrets/*.example.yaml."""
    out = {}
    for path in SECRET_TEMPLATES:
        doc = yaml.safe_load(path.read_text())
        out[doc["metadata"]["name"]] = doc["stringData"]
    return out


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"])
        for d in docs
        if d["kind"] in WORKLOADS
    ]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec["containers"] + spec.get("initContainers", [])


def test_render_is_valid_kubernetes_1_32(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for expected in [
        ("Namespace", "prodtune"),
        ("Deployment", "mlflow"),
        ("Service", "mlflow"),
        ("StatefulSet", "minio"),
        ("Job", "minio-create-bucket"),
        ("StatefulSet", "mlflow-postgres"),
        ("ServiceAccount", "prodtune-pipeline-runner"),
        ("Role", "prodtune-pipeline-runner"),
        ("RoleBinding", "prodtune-pipeline-runner"),
        ("ConfigMap", "prodtune-config"),
    ]:
        assert expected in kinds


def test_everything_lands_in_the_prodtune_namespace_and_no_secret_is_rendered(
    docs: list[dict[str, Any]],
) -> None:
    for doc in docs:
        if doc["kind"] not in CLUSTER_SCOPED:
            assert doc["metadata"].get("namespace") == "prodtune", doc["metadata"]["name"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "prodtune"
    assert not [d for d in docs if d["kind"] == "Secret"], (
        "Secrets belong in manifests/secrets/*.example.yaml"
    )


def test_pods_meet_the_restricted_profile_the_namespace_enforces(docs: list[dict[str, Any]]) -> None:
    ns = next(d for d in docs if d["kind"] == "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    specs = pod_specs(docs)
    assert len(specs) == 4
    for where, spec in specs:
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0, where
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", where
        assert spec.get("automountServiceAccountToken") is False, where
        for c in containers(spec):
            sc = c["securityContext"]
            who = f"{where}/{c['name']}"
            assert sc["allowPrivilegeEscalation"] is False, who
            assert sc["capabilities"] == {"drop": ["ALL"]}, who
            assert sc["readOnlyRootFilesystem"] is True, who
            assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}, who
            assert c["resources"]["limits"] and c["resources"]["requests"], who
            image = c["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), (
                f"{who}: unpinned {image}"
            )


def test_every_secret_reference_has_a_template_with_that_key(
    docs: list[dict[str, Any]], templates: dict[str, dict[str, str]]
) -> None:
    refs = set()
    for _, spec in pod_specs(docs):
        for c in containers(spec):
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add((ref["name"], ref["key"]))
    assert refs  # the MLflow server, MinIO and the bucket Job all read Secrets
    for name, key in sorted(refs):
        assert key in templates.get(name, {}), f"no template provides Secret {name} key {key}"


def test_pipeline_and_chart_secrets_have_templates(templates: dict[str, dict[str, str]]) -> None:
    from pipelines.pipeline import PlatformSettings

    platform = PlatformSettings()
    # pipelines/pipeline.py maps these keys of the S3 Secret into every step.
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PRODTUNE_S3_ENDPOINT_URL"} <= set(
        templates[platform.s3_secret]
    )
    assert "OPENAI_API_KEY" in templates[platform.teacher_secret]
    chart_values = yaml.safe_load((ROOT / "serving" / "chart" / "values.yaml").read_text())
    assert chart_values["s3"]["existingSecret"] == platform.s3_secret
    key = chart_values["router"]["apiKey"]["existingSecretKey"]
    assert key in templates["prodtune-router-api-key"]


def test_secret_templates_hold_placeholders_only(templates: dict[str, dict[str, str]]) -> None:
    assert len(templates) == len(SECRET_TEMPLATES) >= 4
    for name, data in templates.items():
        for key, value in data.items():
            sensitive = any(
                word in key.upper() for word in ("PASSWORD", "SECRET", "API_KEY", "API-KEY", "KEY_ID")
            )
            if sensitive or key == "MLFLOW_BACKEND_STORE_URI":
                assert "REPLACE_ME" in value, f"{name}.{key} must be a placeholder"


def test_secret_templates_are_valid_and_not_part_of_the_kustomization(docs: list[dict[str, Any]]) -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert not any("secret" in str(r).lower() for r in kustomization["resources"])
    for path in SECRET_TEMPLATES:
        doc = yaml.safe_load(path.read_text())
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        assert doc["kind"] == "Secret" and doc["metadata"]["namespace"] == "prodtune"


def _service_port(docs: list[dict[str, Any]], url: str) -> None:
    parsed = urlparse(url if "://" in url else f"tcp://{url}")
    host = parsed.hostname or ""
    name, _, rest = host.partition(".")
    assert rest in ("", "prodtune", "prodtune.svc", "prodtune.svc.cluster.local"), url
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    assert name in services, f"{url}: no Service {name}"
    assert parsed.port in {p["port"] for p in services[name]["spec"]["ports"]}, (
        f"{url}: no port {parsed.port}"
    )


def test_urls_point_at_rendered_services(
    docs: list[dict[str, Any]], templates: dict[str, dict[str, str]]
) -> None:
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "prodtune-config")[
        "data"
    ]
    for key in ("PRODTUNE_S3_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL", "MLFLOW_TRACKING_URI"):
        _service_port(docs, config[key])
    _service_port(docs, templates["prodtune-s3"]["PRODTUNE_S3_ENDPOINT_URL"])
    db = templates["mlflow-backend"]["MLFLOW_BACKEND_STORE_URI"]
    assert db.startswith("postgresql+psycopg2://")
    _service_port(docs, db.split("@", 1)[1].split("/", 1)[0])
    chart_values = yaml.safe_load((ROOT / "serving" / "chart" / "values.yaml").read_text())
    _service_port(docs, chart_values["mlflowTrackingUri"])
    _service_port(docs, chart_values["s3"]["endpointUrl"])


def mlflow_host_matcher() -> Any:
    """`is_allowed_host_header` from the installed MLflow, compiled alone: importing
    mlflow.server would load the whole tracking server (about 15 s on 2 cores)."""
    spec = importlib.util.find_spec("mlflow")
    assert spec and spec.origin, "mlflow is not installed"
    source = (Path(spec.origin).parent / "server" / "security_utils.py").read_text()
    func = next(
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.FunctionDef) and node.name == "is_allowed_host_header"
    )
    namespace: dict[str, Any] = {"fnmatch": fnmatch}
    exec(compile(ast.Module(body=[func], type_ignores=[]), "security_utils.py", "exec"), namespace)
    return namespace["is_allowed_host_header"]


def test_mlflow_accepts_its_in_cluster_host_names(docs: list[dict[str, Any]]) -> None:
    # MLflow 3 rejects unknown Host headers; check with MLflow's own matcher.
    is_allowed_host_header = mlflow_host_matcher()
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "prodtune-config")[
        "data"
    ]
    allowed = config["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    chart_uri = yaml.safe_load((ROOT / "serving" / "chart" / "values.yaml").read_text())["mlflowTrackingUri"]
    for uri in (
        config["MLFLOW_TRACKING_URI"],
        chart_uri,
        "http://mlflow:5000",
        "http://mlflow.prodtune:5000",
    ):
        assert is_allowed_host_header(allowed, urlparse(uri).netloc), uri
    assert not is_allowed_host_header(allowed, "mlflow.attacker.example:5000")
    deployment = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "mlflow")
    server = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "--artifacts-destination=$(MLFLOW_ARTIFACTS_DESTINATION)" in server["args"]
    assert config["MLFLOW_ARTIFACTS_DESTINATION"].startswith(f"s3://{config['PRODTUNE_S3_BUCKET']}/")


def test_pipeline_runner_role_is_least_privilege(docs: list[dict[str, Any]]) -> None:
    role = next(d for d in docs if d["kind"] == "Role")
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
        assert "secrets" not in rule["resources"], "steps get Secrets through the kubelet, not the API"
    binding = next(d for d in docs if d["kind"] == "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    accounts = {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"}
    assert {s["name"] for s in binding["subjects"]} <= accounts


def test_every_config_reference_exists_in_the_rendered_configmap(docs: list[dict[str, Any]]) -> None:
    maps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    refs = [
        env["valueFrom"]["configMapKeyRef"]
        for _, spec in pod_specs(docs)
        for c in containers(spec)
        for env in c.get("env", [])
        if "configMapKeyRef" in env.get("valueFrom", {})
    ]
    assert len(refs) >= 7
    for ref in refs:
        assert ref["key"] in maps.get(ref["name"], {}), f"ConfigMap {ref['name']} has no key {ref['key']}"
