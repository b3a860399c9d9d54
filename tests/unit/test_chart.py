"""The prodtune-serving Helm chart, rendered and validated offline.

helm and kubectl come from scripts/k8s-tools.sh (a PyPI wheel, cached under $PRODTUNE_CACHE);
rendered objects are checked against the Kubernetes 1.32 schemas with kubernetes-validate (strict:
unknown fields fail), then their wiring is checked: security contexts, Secrets, Services that
match their pods, env that points at Services that exist. No cluster is needed.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s_rules import restricted_violations

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "serving" / "chart"
FULL_VALUES = CHART / "ci" / "all-enabled-gpu-values.yaml"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
K8S_VERSION = "1.32.0"
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
SENTINEL_KEY = "sentinel-api-key-3f9c1e"

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate",
    reason="kubernetes-validate not installed (pip install kubernetes-validate==1.37.0)",
)


def helm(tools: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(tools / "helm"), *args], capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def render(tools: Path, *args: str) -> list[dict[str, Any]]:
    out = helm(tools, "template", "rel", str(CHART), "--namespace", "serving", *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def render_fails(tools: Path, *args: str) -> str:
    proc = helm(tools, "template", "rel", str(CHART), *args, check=False)
    assert proc.returncode != 0, "expected helm template to fail"
    return proc.stderr


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for doc in docs:
        if doc["kind"] in WORKLOADS:
            specs.append((f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]))
        elif doc["kind"] == "Pod":
            specs.append((f"Pod/{doc['metadata']['name']}", doc["spec"]))
    return specs


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, (
        f"{kind}/{name} not rendered once: {[(d['kind'], d['metadata']['name']) for d in docs]}"
    )
    return matches[0]


def container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == name)


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def assert_hardened(where: str, spec: dict[str, Any]) -> None:
    """Restricted Pod Security profile, plus read-only root filesystems with a writable /tmp."""
    assert restricted_violations(spec) == [], where
    pod = spec.get("securityContext", {})
    assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
    for c in spec["containers"] + spec.get("initContainers", []):
        sc = c.get("securityContext", {})
        who = f"{where} container {c['name']}"
        assert sc.get("runAsNonRoot", pod.get("runAsNonRoot")) is True, who
        assert sc.get("runAsUser", pod.get("runAsUser", 1)) != 0, who
        assert sc.get("allowPrivilegeEscalation") is False, who
        assert sc.get("privileged", False) is False, who
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], who
        assert not sc.get("capabilities", {}).get("add"), who
        assert sc.get("seccompProfile", pod.get("seccompProfile", {})).get("type") == "RuntimeDefault", who
        assert "resources" in c and c["resources"].get("limits"), f"{who} has no limits"
        if sc.get("readOnlyRootFilesystem") is not True:
            continue
        mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
        if not where.startswith("Pod/"):  # curl test pods write nothing
            assert "/tmp" in mounts, f"{who}: read-only root but no writable /tmp"


def validate_all(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:  # pragma: no cover - message for humans
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")


@pytest.fixture(scope="module")
def default_docs(tools: Path) -> list[dict[str, Any]]:
    return render(tools)


@pytest.fixture(scope="module")
def full_docs(tools: Path) -> list[dict[str, Any]]:
    return render(tools, "-f", str(FULL_VALUES))


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=lambda v: v.name if v else "default")
def test_lint_strict_and_validate_default_and_each_ci_values(tools: Path, values: Path | None) -> None:
    args = ["-f", str(values)] if values else []
    helm(tools, "lint", "--strict", str(CHART), *args)
    docs = render(tools, *args)
    validate_all(docs)
    for where, spec in pod_specs(docs):
        assert_hardened(where, spec)


def test_default_render_is_valid_kubernetes_1_32(default_docs: list[dict[str, Any]]) -> None:
    validate_all(default_docs)
    kinds = {(d["kind"], d["metadata"]["name"]) for d in default_docs}
    for expected in [
        ("Deployment", "rel-prodtune-serving-router"),
        ("StatefulSet", "rel-prodtune-serving-ollama"),
        ("StatefulSet", "rel-prodtune-serving-weaviate"),
        ("Service", "rel-prodtune-serving-weaviate"),
        ("Service", "rel-prodtune-serving-weaviate-grpc"),
        ("ServiceAccount", "rel-prodtune-serving"),
    ]:
        assert expected in kinds
    # Off by default: UI, ingresses, PDB, GPUs, and no Secret holding an API key.
    assert not {k for k, _ in kinds} & {"Ingress", "PodDisruptionBudget", "Secret"}
    assert ("Deployment", "rel-prodtune-serving-ui") not in kinds
    ollama = find(default_docs, "StatefulSet", "rel-prodtune-serving-ollama")["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in json.dumps(ollama)
    router = container(
        find(default_docs, "Deployment", "rel-prodtune-serving-router")["spec"]["template"]["spec"], "router"
    )
    assert router["command"] == ["prodtune", "serve"]
    assert router["args"] == ["--host", "0.0.0.0", "--port", str(router["ports"][0]["containerPort"])]


def test_full_render_is_valid_and_puts_ollama_on_the_gpu_pool(full_docs: list[dict[str, Any]]) -> None:
    validate_all(full_docs)
    kinds = [d["kind"] for d in full_docs]
    assert kinds.count("Ingress") == 2 and "PodDisruptionBudget" in kinds
    assert ("Deployment", "rel-prodtune-serving-ui") in {
        (d["kind"], d["metadata"]["name"]) for d in full_docs
    }
    sts = find(full_docs, "StatefulSet", "rel-prodtune-serving-ollama")
    spec = sts["spec"]["template"]["spec"]
    server = container(spec, "ollama")
    assert server["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert server["resources"]["limits"]["memory"] == "16Gi"  # GPU limit added, CPU/memory kept
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert {"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": ["15000"]} in terms[0][
        "matchExpressions"
    ]
    env = env_of(server)
    assert env["OLLAMA_NUM_PARALLEL"] == "4" and env["OLLAMA_CONTEXT_LENGTH"] == "4096"
    assert spec["runtimeClassName"] == "nvidia"
    # the router sends each model as many requests at once as Ollama serves in parallel
    router = find(full_docs, "Deployment", "rel-prodtune-serving-router")["spec"]["template"]["spec"]
    assert env_of(router["containers"][0])["PRODTUNE_LLM_OLLAMA_NUM_PARALLEL"] == "4"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    # Only the server asks for the GPU; the import init containers do not hold one.
    assert all("nvidia.com/gpu" not in c["resources"].get("limits", {}) for c in spec["initContainers"])
    claim = sts["spec"]["volumeClaimTemplates"][0]["spec"]
    assert claim["storageClassName"] == "fast-ssd" and claim["resources"]["requests"]["storage"] == "100Gi"


@pytest.mark.parametrize("values", ["default", "full"])
def test_every_pod_runs_non_root_and_hardened(values: str, request: pytest.FixtureRequest) -> None:
    docs = request.getfixturevalue(f"{values}_docs")
    specs = pod_specs(docs)
    assert len(specs) >= 5
    for where, spec in specs:
        assert_hardened(where, spec)
        assert spec.get("automountServiceAccountToken") is False, where
        if where.split("/")[0] in ("Deployment", "StatefulSet"):
            # checkov's probe checks are skipped for run-once test pods; long-running pods need both.
            for c in spec["containers"]:
                assert c.get("readinessProbe") and c.get("livenessProbe"), f"{where}/{c['name']}"


def test_services_select_their_pods_and_env_points_at_real_services(full_docs: list[dict[str, Any]]) -> None:
    pods = {name: spec for name, spec in pod_specs(full_docs)}
    labels = {
        f"{d['kind']}/{d['metadata']['name']}": d["spec"]["template"]["metadata"]["labels"]
        for d in full_docs
        if d["kind"] in WORKLOADS
    }
    services = {d["metadata"]["name"]: d for d in full_docs if d["kind"] == "Service"}
    for name, svc in services.items():
        selector = svc["spec"]["selector"]
        matched = [w for w, lab in labels.items() if selector.items() <= lab.items()]
        assert len(matched) == 1, f"Service {name} selects {matched}"
        ports = {p["name"] for c in pods[matched[0]]["containers"] for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in ports, f"Service {name} targets missing port {port['targetPort']}"

    def service_port(host: str, port: str | int) -> None:
        assert host in services, f"{host} is not a rendered Service"
        assert int(port) in {p["port"] for p in services[host]["spec"]["ports"]}, f"{host} has no port {port}"

    router = env_of(container(pods["Deployment/rel-prodtune-serving-router"], "router"))
    assert router["PRODTUNE_LLM_BACKEND"] == "ollama"
    ollama_host, ollama_port = router["OLLAMA_HOST"].removeprefix("http://").split(":")
    service_port(ollama_host, ollama_port)
    service_port(router["PRODTUNE_SERVING_WEAVIATE_HTTP_HOST"], router["PRODTUNE_SERVING_WEAVIATE_HTTP_PORT"])
    service_port(router["PRODTUNE_SERVING_WEAVIATE_GRPC_HOST"], router["PRODTUNE_SERVING_WEAVIATE_GRPC_PORT"])
    assert router["PRODTUNE_SERVING_VECTOR_BACKEND"] == "weaviate"
    assert router["PRODTUNE_SERVING_WEAVIATE_API_KEY"]["secretKeyRef"]["name"] == "prodtune-weaviate-api-key"
    ui = env_of(container(pods["Deployment/rel-prodtune-serving-ui"], "ui"))
    api_host, api_port = ui["PRODTUNE_API_URL"].removeprefix("http://").split(":")
    service_port(api_host, api_port)


def test_router_and_ollama_import_resolve_the_same_models(full_docs: list[dict[str, Any]]) -> None:
    pods = dict(pod_specs(full_docs))
    router = env_of(container(pods["Deployment/rel-prodtune-serving-router"], "router"))
    fetch = env_of(container(pods["StatefulSet/rel-prodtune-serving-ollama"], "fetch-models"))
    # which models serve must agree; how the router calls them (backend, parallelism) is its own
    own = {"PRODTUNE_LLM_BACKEND", "PRODTUNE_LLM_OLLAMA_NUM_PARALLEL"}
    keys = [k for k in router if k.startswith("PRODTUNE_LLM_") and k not in own]
    assert len(keys) >= 4
    assert {k: router[k] for k in keys} == {k: fetch[k] for k in keys}
    # The import downloads GGUFs from S3 with keys from the Secret; the router (Ollama backend) has none.
    assert fetch["AWS_SECRET_ACCESS_KEY"] == {
        "secretKeyRef": {"name": "prodtune-s3", "key": "AWS_SECRET_ACCESS_KEY"}
    }
    assert "AWS_SECRET_ACCESS_KEY" not in router


def test_helm_test_pods_probe_each_enabled_component(full_docs: list[dict[str, Any]]) -> None:
    services = {d["metadata"]["name"] for d in full_docs if d["kind"] == "Service"}
    tests = [d for d in full_docs if d["kind"] == "Pod"]
    assert all(d["metadata"]["annotations"]["helm.sh/hook"] == "test" for d in tests)
    curls = [d for d in tests if d["spec"]["containers"][0]["name"] == "curl"]
    urls = {d["spec"]["containers"][0]["args"][-1] for d in curls}
    paths = {u.split("/", 3)[3] for u in urls}
    assert paths == {"healthz", "v1/.well-known/ready", "api/tags", "_stcore/health"}
    assert {u.removeprefix("http://").split(":")[0] for u in urls} <= services


def test_api_key_is_never_rendered_unless_given(tools: Path) -> None:
    # Default: the pods reference <fullname>-api-key, which the chart does not create.
    docs = render(tools)
    router = find(docs, "Deployment", "rel-prodtune-serving-router")["spec"]["template"]["spec"]
    ref = env_of(container(router, "router"))["PRODTUNE_API_KEY"]["secretKeyRef"]
    assert ref == {"name": "rel-prodtune-serving-api-key", "key": "api-key"}
    assert not [d for d in docs if d["kind"] == "Secret"]

    # existingSecret: referenced, not created.
    docs = render(tools, "--set", "router.apiKey.existingSecret=mine")
    router = find(docs, "Deployment", "rel-prodtune-serving-router")["spec"]["template"]["spec"]
    assert env_of(container(router, "router"))["PRODTUNE_API_KEY"]["secretKeyRef"]["name"] == "mine"
    assert not [d for d in docs if d["kind"] == "Secret"]

    # Given explicitly: a Secret holds it (base64), and nothing else carries the literal.
    out = helm(tools, "template", "rel", str(CHART), "--set", f"router.apiKey.value={SENTINEL_KEY}").stdout
    assert SENTINEL_KEY not in out
    secret = find([d for d in yaml.safe_load_all(out) if d], "Secret", "rel-prodtune-serving-api-key")
    assert base64.b64decode(secret["data"]["api-key"]).decode() == SENTINEL_KEY

    # Disabled: no key env at all.
    docs = render(tools, "--set", "router.apiKey.enabled=false")
    router = find(docs, "Deployment", "rel-prodtune-serving-router")["spec"]["template"]["spec"]
    assert "PRODTUNE_API_KEY" not in env_of(container(router, "router"))


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("router.replicaCount=two", "router.replicaCount"),
        ("router.replicaCoutn=2", "replicaCoutn"),
        ("ollama.gpu.count=0", "ollama.gpu.count"),
        ("router.llmBackend=vllm", "router.llmBackend"),
        ("router.port=70000", "router.port"),
        ("mlflowTrackingUri=mlflow:5000", "mlflowTrackingUri"),
        ("ollama.image.pullPolicy=Sometimes", "pullPolicy"),
    ],
)
def test_schema_rejects_invalid_values(tools: Path, setting: str, complaint: str) -> None:
    err = render_fails(tools, "--set", setting)
    assert "values don't meet the specifications of the schema" in err and complaint in err, err


def test_external_backends_are_required_when_bundled_ones_are_off(tools: Path) -> None:
    err = render_fails(tools, "--set", "ollama.enabled=false")
    assert "router.externalOllamaHost is required" in err
    err = render_fails(tools, "--set", "weaviate.enabled=false")
    assert "router.externalWeaviate.httpHost is required" in err
    err = render_fails(tools, "--set", "weaviate.auth.enabled=true")
    assert "weaviate.auth.existingSecret is required" in err

    docs = render(
        tools,
        "--set",
        "ollama.enabled=false,weaviate.enabled=false,router.externalOllamaHost=http://ollama.ai:11434",
        "--set",
        "router.externalWeaviate.httpHost=weaviate.db",
    )
    validate_all(docs)
    assert not [d for d in docs if d["kind"] == "StatefulSet"]
    env = env_of(
        container(
            find(docs, "Deployment", "rel-prodtune-serving-router")["spec"]["template"]["spec"], "router"
        )
    )
    assert env["OLLAMA_HOST"] == "http://ollama.ai:11434"
    assert env["PRODTUNE_SERVING_WEAVIATE_GRPC_HOST"] == "weaviate.db"  # defaults to the HTTP host


def test_llamacpp_fallback_gets_s3_and_a_writable_model_cache(tools: Path) -> None:
    docs = render(tools, "--set", "router.llmBackend=llamacpp,ollama.enabled=false")
    validate_all(docs)
    spec = find(docs, "Deployment", "rel-prodtune-serving-router")["spec"]["template"]["spec"]
    router = container(spec, "router")
    env = env_of(router)
    assert "OLLAMA_HOST" not in env
    assert env["PRODTUNE_LLM_CACHE_DIR"] == "/models-cache"
    assert env["AWS_ACCESS_KEY_ID"]["secretKeyRef"]["name"] == "prodtune-s3"
    assert "/models-cache" in {m["mountPath"] for m in router["volumeMounts"]}
    assert any(v["name"] == "models-cache" and "emptyDir" in v for v in spec["volumes"])
    assert_hardened("Deployment/router", spec)


def test_import_scripts_in_configmap_are_the_chart_files(default_docs: list[dict[str, Any]]) -> None:
    cm = find(default_docs, "ConfigMap", "rel-prodtune-serving-ollama-import")
    for name in ("fetch_models.py", "create_models.sh"):
        assert cm["data"][name].strip() == (CHART / "files" / name).read_text().strip()


def test_strict_validation_catches_a_misspelt_field(default_docs: list[dict[str, Any]]) -> None:
    # Guards the checks above: the validator really rejects unknown fields in a rendered pod spec.
    sts = json.loads(json.dumps(find(default_docs, "StatefulSet", "rel-prodtune-serving-weaviate")))
    sts["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonRot"] = True
    with pytest.raises(kubernetes_validate.ValidationError, match="runAsNonRot"):
        kubernetes_validate.validate(sts, K8S_VERSION, strict=True)


def render_notes(tools: Path, tmp_path: Path, *args: str) -> str:
    """NOTES.txt rendered offline: `helm install --dry-run` needs a cluster, so a copy of the chart
    gets a ConfigMap template that runs the notes through `tpl`."""
    import shutil

    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "NOTES.copy")
    (chart / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
        'data:\n  notes: {{ tpl (.Files.Get "NOTES.copy") . | quote }}\n'
    )
    out = helm(tools, "template", "rel", str(chart), "--show-only", "templates/zz-notes.yaml", *args).stdout
    return yaml.safe_load(out)["data"]["notes"]


def test_notes_tell_how_to_provide_the_api_key(tools: Path, tmp_path: Path) -> None:
    notes = render_notes(tools, tmp_path)
    assert "create secret generic rel-prodtune-serving-api-key" in notes
    assert "models:/prodtune-qa@champion" in notes and "helm test rel" in notes
    notes = render_notes(tools, tmp_path / "given", "--set", f"router.apiKey.value={SENTINEL_KEY}")
    assert "WARNING: the API key was given in values" in notes and SENTINEL_KEY not in notes
    notes = render_notes(tools, tmp_path / "off", "--set", "router.apiKey.enabled=false")
    assert "accepts unauthenticated requests" in notes


def test_network_policies_admit_the_router_and_test_pods_only(full_docs: list[dict[str, Any]]) -> None:
    policies = {d["metadata"]["name"]: d["spec"] for d in full_docs if d["kind"] == "NetworkPolicy"}
    assert set(policies) == {"rel-prodtune-serving-ollama", "rel-prodtune-serving-weaviate"}
    workloads = {d["metadata"]["name"]: d["spec"]["template"] for d in full_docs if d["kind"] in WORKLOADS}
    tests = [d for d in full_docs if d["kind"] == "Pod"]
    router_labels = workloads["rel-prodtune-serving-router"]["metadata"]["labels"]
    ui_labels = workloads["rel-prodtune-serving-ui"]["metadata"]["labels"]
    for name, spec in policies.items():
        target = workloads[name]
        assert spec["podSelector"]["matchLabels"].items() <= target["metadata"]["labels"].items()
        allowed = [peer["podSelector"]["matchLabels"] for peer in spec["ingress"][0]["from"]]

        def admitted(labels: dict[str, str], allowed: list[dict[str, str]] = allowed) -> bool:
            return any(sel.items() <= labels.items() for sel in allowed)

        assert admitted(router_labels) and all(admitted(t["metadata"]["labels"]) for t in tests)
        assert not admitted(ui_labels)  # the UI goes through the router
        assert admitted({"prodtune.io/serving-client": "true"})  # networkPolicy.clientLabels
        ports = {p["name"] for c in target["spec"]["containers"] for p in c["ports"]}
        assert {p["port"] for p in spec["ingress"][0]["ports"]} <= ports


def test_index_job_downloads_the_catalogue_then_runs_the_real_index_cli(
    full_docs: list[dict[str, Any]],
) -> None:
    import typer.main

    from pipelines.cli import _register, app

    job = find(full_docs, "Job", "rel-prodtune-serving-index")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    spec = job["spec"]["template"]["spec"]
    fetch, index = container(spec, "fetch-catalogue"), container(spec, "index")
    uri = "s3://prodtune/kfp/run-1/prep/processed/trn-processed.parquet"
    assert fetch["command"] == ["python", "-m", "components.common.storage", "fetch", uri, "/work"]
    assert fetch["env"] and env_of(fetch)["AWS_ACCESS_KEY_ID"]["secretKeyRef"]["name"] == "prodtune-s3"
    assert index["command"] == ["prodtune", "index"]
    assert index["args"][0] == "/work/trn-processed.parquet"
    # The args must parse with the project's own `prodtune index` command (options exist, types fit).
    _register()
    command = typer.main.get_command(app)
    ctx = command.make_context("prodtune", ["index", *index["args"]], resilient_parsing=False)
    sub = command.get_command(ctx, "index")
    params = sub.make_context("index", list(index["args"])).params
    assert params["backend"] == "weaviate" and params["limit"] == 1000 and params["batch_size"] == 256
    env = env_of(index)
    assert env["PRODTUNE_SERVING_VECTOR_BACKEND"] == "weaviate"
    assert env["PRODTUNE_SERVING_WEAVIATE_HTTP_HOST"] == "rel-prodtune-serving-weaviate"
    # Weaviate's NetworkPolicy lets the Job in.
    policy = find(full_docs, "NetworkPolicy", "rel-prodtune-serving-weaviate")["spec"]
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert any(
        p["podSelector"]["matchLabels"].items() <= labels.items() for p in policy["ingress"][0]["from"]
    )


def test_index_job_needs_a_catalogue_uri(tools: Path) -> None:
    err = render_fails(tools, "--set", "index.enabled=true")
    assert "index.catalogueUri" in err
    err = render_fails(tools, "--set", "index.enabled=true,index.catalogueUri=/local/file.parquet")
    assert "catalogueUri" in err


def test_ollama_parallelism_and_context_come_from_values(tools: Path, default_docs) -> None:
    server = container(
        find(default_docs, "StatefulSet", "rel-prodtune-serving-ollama")["spec"]["template"]["spec"], "ollama"
    )
    env = env_of(server)
    assert env["OLLAMA_NUM_PARALLEL"] == "2" and env["OLLAMA_CONTEXT_LENGTH"] == "4096"
    assert [e["name"] for e in server["env"]].count("OLLAMA_NUM_PARALLEL") == 1
    err = render_fails(tools, "--set", "ollama.env.OLLAMA_NUM_PARALLEL=8")
    assert "values don't meet the specifications of the schema" in err


def test_router_and_ollama_carry_the_label_mlflow_admits(default_docs) -> None:
    for kind, name in (("Deployment", "router"), ("StatefulSet", "ollama")):
        labels = find(default_docs, kind, f"rel-prodtune-serving-{name}")["spec"]["template"]["metadata"][
            "labels"
        ]
        assert labels["prodtune.io/mlflow-client"] == "true", name
    weaviate = find(default_docs, "StatefulSet", "rel-prodtune-serving-weaviate")
    assert "prodtune.io/mlflow-client" not in weaviate["spec"]["template"]["metadata"]["labels"]


def test_helm_test_completion_pod_is_authenticated_and_runs_the_chart_script(full_docs) -> None:
    pod = find(full_docs, "Pod", "rel-prodtune-serving-test-completion")
    c = pod["spec"]["containers"][0]
    assert c["command"] == ["python", "/scripts/helm_test_completion.py"]
    env = env_of(c)
    assert env["API_KEY"] == {"secretKeyRef": {"name": "prodtune-router-api-key", "key": "api-key"}}
    assert env["API_URL"] == "http://rel-prodtune-serving-router:8000"
    cm = find(full_docs, "ConfigMap", "rel-prodtune-serving-tests")
    assert (
        cm["data"]["helm_test_completion.py"].strip()
        == (CHART / "files" / "helm_test_completion.py").read_text().strip()
    )
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"


def _load_completion_check():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "helm_test_completion", CHART / "files" / "helm_test_completion.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.check


def test_helm_test_completion_script_against_the_real_api() -> None:
    # The real FastAPI app under uvicorn with the deterministic CatalogResponder (serving/api/testing.py):
    # the script passes for a healthy router, and fails on a wrong key or a router that misroutes.
    from pydantic import SecretStr

    from serving.api.app import create_app
    from serving.api.settings import ApiSettings
    from serving.api.testing import CatalogResponder, serve_in_thread

    check = _load_completion_check()
    values = yaml.safe_load((CHART / "values.yaml").read_text())["tests"]["completion"]
    products = [("0000031909", "Girls Ballet Tutu Neon Pink", "A three layer ballet tutu, 12 inches long.")]
    app = create_app(CatalogResponder(products), settings=ApiSettings(key=SecretStr("k-123")))
    env = {"DESCRIBE_INPUT": values["describeInput"], "ANSWER_INPUT": values["answerInput"], "TIMEOUT": "20"}
    with serve_in_thread(app) as url:
        assert check({**env, "API_URL": url, "API_KEY": "k-123"}) == []
        failures = check({**env, "API_URL": url, "API_KEY": "wrong"})
        assert failures and all("HTTP 401" in f for f in failures)
        swapped = check({**env, "API_URL": url, "API_KEY": "k-123", "DESCRIBE_INPUT": values["answerInput"]})
        assert any("routed to 'answer'" in f for f in swapped)
