"""manifests/: the cluster services (namespace `prodtune`) and the KFP overlays (kfp/standalone,
kfp/multi-user), rendered with `kubectl kustomize` and validated offline against the Kubernetes 1.32
schemas; then cross-checked against what the compiled pipeline references (Secrets, keys, the
ConfigMap), what KFP's v2 launcher reads (RBAC), what `prodtune submit` defaults to, the restricted
Pod Security profile, and who the MLflow NetworkPolicy lets in.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.util
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from tests.k8s_rules import network_policy_admits, rbac_allows, restricted_violations

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
SECRET_TEMPLATES = sorted((MANIFESTS / "secrets").glob("*.example.yaml"))
OVERLAYS = ("standalone", "multi-user")
K8S_VERSION = "1.32.0"
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate",
    reason="kubernetes-validate not installed (pip install kubernetes-validate==1.37.0)",
)


def kustomize(kubectl: Path, path: Path) -> list[dict[str, Any]]:
    proc = subprocess.run([str(kubectl), "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def validate(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")


@pytest.fixture(scope="module")
def kubectl(tools: Path) -> Path:
    return tools / "kubectl"


@pytest.fixture(scope="module")
def docs(kubectl: Path) -> list[dict[str, Any]]:
    return kustomize(kubectl, MANIFESTS)


@pytest.fixture(scope="module")
def overlays(kubectl: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Each overlay rendered from a copy whose Secret env files are the committed placeholders."""
    copy = tmp_path_factory.mktemp("manifests") / "manifests"
    shutil.copytree(MANIFESTS, copy)
    for example in copy.glob("kfp/*/secrets/*.env.example"):
        shutil.copy(example, example.with_suffix(""))
    return {name: kustomize(kubectl, copy / "kfp" / name) for name in OVERLAYS}


@pytest.fixture(scope="module")
def templates() -> dict[str, dict[str, str]]:
    """Secret name -> {key: placeholder value} from manifests/secrets/*.example.yaml."""
    out = {}
    for path in SECRET_TEMPLATES:
        doc = yaml.safe_load(path.read_text())
        out[doc["metadata"]["name"]] = doc["stringData"]
    return out


@pytest.fixture(scope="module")
def step_refs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What the compiled pipeline's steps reference: Secrets (name -> keys, optional), ConfigMaps."""
    from pipelines.compile import compile_pipeline

    out = compile_pipeline(tmp_path_factory.mktemp("pkg") / "p.yaml")
    _, platform = list(yaml.safe_load_all(out.read_text()))
    secrets: dict[str, set[str]] = {}
    maps: dict[str, set[str]] = {}
    for cfg in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values():
        for s in cfg.get("secretAsEnv", []):
            secrets.setdefault(s["secretName"], set()).update(m["secretKey"] for m in s["keyToEnv"])
        for c in cfg.get("configMapAsEnv", []):
            maps.setdefault(c["configMapName"], set()).update(m["configMapKey"] for m in c["keyToEnv"])
    return {"secrets": secrets, "config_maps": maps}


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"])
        for d in docs
        if d["kind"] in WORKLOADS
    ]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec["containers"] + spec.get("initContainers", [])


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return doc


# --- services (namespace prodtune) -------------------------------------------------------------


def test_render_is_valid_kubernetes_1_32(docs: list[dict[str, Any]]) -> None:
    validate(docs)
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for expected in [
        ("Namespace", "prodtune"),
        ("Deployment", "mlflow"),
        ("Service", "mlflow"),
        ("NetworkPolicy", "mlflow"),
        ("StatefulSet", "minio"),
        ("Job", "minio-create-bucket"),
        ("StatefulSet", "mlflow-postgres"),
        ("NetworkPolicy", "mlflow-postgres"),
        ("ConfigMap", "prodtune-config"),
    ]:
        assert expected in kinds
    # The pipeline's RBAC moved to the namespaces where KFP runs the pods.
    assert not {k for k, _ in kinds} & {"Role", "RoleBinding"}


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
    ns = find(docs, "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    specs = pod_specs(docs)
    assert len(specs) == 4
    for where, spec in specs:
        assert restricted_violations(spec) == [], where
        assert spec.get("automountServiceAccountToken") is False, where
        for c in containers(spec):
            who = f"{where}/{c['name']}"
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, who
            assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}, who
            assert c["resources"]["limits"] and c["resources"]["requests"], who
            image = c["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), (
                f"{who}: unpinned {image}"
            )


def test_restricted_checker_rejects_what_the_profile_rejects() -> None:
    # Guards the checker: each mutation of a compliant pod must be caught.
    good = {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "c",
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    assert restricted_violations(good) == []
    import copy

    for mutate in (
        lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
        lambda p: p.update(hostNetwork=True),
        lambda p: p["securityContext"].pop("seccompProfile"),
        lambda p: p["securityContext"].update(runAsNonRoot=False),
        lambda p: p["containers"][0]["securityContext"].update(allowPrivilegeEscalation=True),
        lambda p: p["containers"][0]["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
        lambda p: p["containers"][0]["securityContext"]["capabilities"].update(drop=[]),
        lambda p: p["containers"][0]["securityContext"].update(privileged=True),
        lambda p: p["containers"][0].update(ports=[{"containerPort": 80, "hostPort": 80}]),
    ):
        pod = copy.deepcopy(good)
        mutate(pod)
        assert restricted_violations(pod), pod


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


def test_chart_secrets_have_templates(templates: dict[str, dict[str, str]]) -> None:
    chart_values = yaml.safe_load((ROOT / "serving" / "chart" / "values.yaml").read_text())
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(
        templates[chart_values["s3"]["existingSecret"]]
    )
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
    for example in MANIFESTS.glob("kfp/*/secrets/*.env.example"):
        for line in example.read_text().splitlines():
            key, _, value = line.partition("=")
            if any(word in key for word in ("KEY", "SECRET")) and not line.startswith("#"):
                assert value == "REPLACE_ME", f"{example}: {key}"


def test_secret_templates_are_valid_and_not_part_of_the_kustomization() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert not any("secret" in str(r).lower() for r in kustomization["resources"])
    for path in SECRET_TEMPLATES:
        doc = yaml.safe_load(path.read_text())
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        assert doc["kind"] == "Secret" and doc["metadata"]["namespace"] == "prodtune"
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "manifests/kfp/standalone/secrets/prodtune-s3.env"], cwd=ROOT
    )
    assert ignored.returncode == 0, "filled-in Secret env files must be gitignored"


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
    config = find(docs, "ConfigMap", "prodtune-config")["data"]
    for key in ("PRODTUNE_S3_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL", "MLFLOW_TRACKING_URI"):
        _service_port(docs, config[key])
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


def test_mlflow_accepts_its_in_cluster_host_names(docs: list[dict[str, Any]], overlays) -> None:
    # MLflow 3 rejects unknown Host headers; check with MLflow's own matcher.
    is_allowed_host_header = mlflow_host_matcher()
    config = find(docs, "ConfigMap", "prodtune-config")["data"]
    allowed = config["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    chart_uri = yaml.safe_load((ROOT / "serving" / "chart" / "values.yaml").read_text())["mlflowTrackingUri"]
    step_uris = [
        find(o, "ConfigMap", "prodtune-config")["data"]["MLFLOW_TRACKING_URI"] for o in overlays.values()
    ]
    for uri in (config["MLFLOW_TRACKING_URI"], chart_uri, *step_uris, "http://mlflow:5000"):
        assert is_allowed_host_header(allowed, urlparse(uri).netloc), uri
    assert not is_allowed_host_header(allowed, "mlflow.attacker.example:5000")
    server = find(docs, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]
    assert "--artifacts-destination=$(MLFLOW_ARTIFACTS_DESTINATION)" in server["args"]
    assert config["MLFLOW_ARTIFACTS_DESTINATION"].startswith(f"s3://{config['PRODTUNE_S3_BUCKET']}/")


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


# --- KFP overlays -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OVERLAYS)
def test_overlay_is_valid_and_provides_what_the_steps_reference(name, overlays, step_refs, docs) -> None:
    rendered = overlays[name]
    validate(rendered)
    namespace = yaml.safe_load((MANIFESTS / "kfp" / name / "kustomization.yaml").read_text())["namespace"]
    assert {d["metadata"]["namespace"] for d in rendered} == {namespace}
    secrets = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "Secret"}
    for secret, keys in step_refs["secrets"].items():
        assert secret in secrets, f"{name}: no Secret {secret}"
        assert keys <= set(secrets[secret]["data"]), (
            f"{name}: Secret {secret} lacks {keys - set(secrets[secret]['data'])}"
        )
    maps = {d["metadata"]["name"]: d["data"] for d in rendered if d["kind"] == "ConfigMap"}
    for cm, keys in step_refs["config_maps"].items():
        assert keys <= set(maps[cm]), f"{name}: ConfigMap {cm} lacks {keys - set(maps[cm])}"
        # Cross-namespace: the steps reach the services in `prodtune` by full name.
        for key in ("MLFLOW_TRACKING_URI", "PRODTUNE_S3_ENDPOINT_URL"):
            assert urlparse(maps[cm][key]).hostname.endswith(".prodtune.svc.cluster.local"), key
            _service_port(docs, maps[cm][key])


def test_overlay_without_filled_secret_files_fails_naming_the_file(kubectl: Path) -> None:
    proc = subprocess.run(
        [str(kubectl), "kustomize", str(MANIFESTS / "kfp" / "standalone")], capture_output=True, text=True
    )
    if (MANIFESTS / "kfp" / "standalone" / "secrets" / "prodtune-s3.env").exists():
        pytest.skip("a filled-in secrets/prodtune-s3.env exists in this work tree")
    assert proc.returncode != 0 and "prodtune-s3.env" in proc.stderr


# What KFP v2's driver, launcher and Argo's executor do with the run's account.
LAUNCHER_NEEDS = [
    ("get", "configmaps", "", "kfp-launcher"),
    ("get", "secrets", "", "mlpipeline-minio-artifact"),
    ("get", "pods", "", "any-pod"),
    ("create", "workflowtaskresults", "argoproj.io", None),
    ("patch", "workflowtaskresults", "argoproj.io", None),
]


@pytest.mark.parametrize("name", OVERLAYS)
def test_launcher_rbac_is_bound_to_the_account_submit_uses(name, overlays) -> None:
    from pipelines.submit import OVERLAYS as SUBMIT_DEFAULTS

    rendered = overlays[name]
    role, binding = find(rendered, "Role"), find(rendered, "RoleBinding")
    for verb, resource, group, obj in LAUNCHER_NEEDS:
        assert rbac_allows(role["rules"], verb, resource, group, obj), (verb, resource)
    # Least privilege: no wildcard, no other Secret, no writes outside task results.
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule
    assert not rbac_allows(role["rules"], "get", "secrets", "", "prodtune-teacher")
    assert not rbac_allows(role["rules"], "list", "secrets")
    assert not rbac_allows(role["rules"], "create", "pods")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    (subject,) = binding["subjects"]
    defaults = SUBMIT_DEFAULTS[name]
    assert subject["name"] == defaults["service_account"]
    namespace = binding["metadata"]["namespace"]
    assert subject["namespace"] == namespace
    # Standalone KFP takes no namespace (runs land in kubeflow); multi-user submits to the profile.
    assert defaults["namespace"] == (None if name == "standalone" else namespace)
    assert namespace == ("kubeflow" if name == "standalone" else defaults["namespace"])


# --- MLflow is reachable only from pipeline steps and serving pods ------------------------------


def test_mlflow_network_policy_admits_steps_and_serving_only(docs, overlays, tools: Path) -> None:
    from pipelines.platform import MLFLOW_CLIENT_LABEL

    policy = find(docs, "NetworkPolicy", "mlflow")
    mlflow_labels = find(docs, "Deployment", "mlflow")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= mlflow_labels.items()
    step = {MLFLOW_CLIENT_LABEL[0]: MLFLOW_CLIENT_LABEL[1], "pipelines.kubeflow.org/v2_component": "true"}
    for name in OVERLAYS:
        ns = find(overlays[name], "RoleBinding")["metadata"]["namespace"]
        assert network_policy_admits(policy, step, ns, "prodtune"), ns
    proc = subprocess.run(
        [str(tools / "helm"), "template", "serving", str(ROOT / "serving" / "chart"), "-n", "prodtune",
         "--set", "ui.enabled=true"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    chart = [d for d in yaml.safe_load_all(proc.stdout) if d and d["kind"] in WORKLOADS]
    labels = {
        d["metadata"]["name"].rsplit("-", 1)[-1]: d["spec"]["template"]["metadata"]["labels"] for d in chart
    }
    assert network_policy_admits(policy, labels["router"], "prodtune", "prodtune")
    assert network_policy_admits(policy, labels["ollama"], "prodtune", "prodtune")  # its registry import
    for other in ("ui", "weaviate"):
        assert not network_policy_admits(policy, labels[other], "prodtune", "prodtune"), other
    assert not network_policy_admits(policy, {"app": "anything"}, "kubeflow", "prodtune")
    assert not network_policy_admits(policy, step, "default", "prodtune")  # labelled, wrong namespace
    db = find(docs, "NetworkPolicy", "mlflow-postgres")
    assert network_policy_admits(db, mlflow_labels, "prodtune", "prodtune")
    assert not network_policy_admits(db, labels["router"], "prodtune", "prodtune")
