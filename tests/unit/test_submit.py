"""`prodtune submit` against a fake KFP v2beta1 API server (real HTTP on 127.0.0.1, tests/fakes/kfp_api.py).

The fake enforces auth, namespaces in multi-user mode, version names and run parameters, and pages
its lists, so these tests fail if submit re-uploads an unchanged package, ignores paging, sends a
parameter the pipeline does not declare, or prints anything but one line on a failure.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import yaml

from pipelines.cli import main
from pipelines.compile import compile_pipeline
from tests.fakes.kfp_api import FakeKfpServer

INPUT = "s3://catalogue/trn.json.gz"


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_pipeline(tmp_path_factory.mktemp("pkg") / "prodtune.yaml")


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(["submit", *args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def submit_args(host: str, package: Path, *extra: str) -> list[str]:
    return ["--host", host, "--input", INPUT, "--package", str(package), *extra]


def ok(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_first_submit_uploads_a_version_creates_the_experiment_and_starts_a_run(package, capsys, monkeypatch):
    monkeypatch.delenv("KFP_TOKEN", raising=False)
    with FakeKfpServer() as kfp:
        result = ok(submit_args(kfp.url, package, "--experiment", "nightly", "--run-name", "n1"), capsys)
        state = kfp.state
    assert result["version_reused"] is False and result["experiment_reused"] is False
    (pipeline,) = state.pipelines.values()
    assert pipeline["name"] == "prodtune"
    (version,) = state.versions[pipeline["pipeline_id"]]
    assert version["name"].startswith("sha256-") and version["name"] == result["version_name"]
    assert state.specs[version["pipeline_version_id"]]["pipelineInfo"]["name"] == "prodtune"
    (run,) = state.runs.values()
    assert run["run_id"] == result["run_id"] and run["display_name"] == "n1"
    assert run["experiment_id"] == result["experiment_id"]
    assert state.experiments[run["experiment_id"]]["display_name"] == "nightly"
    assert run["pipeline_version_reference"] == {
        "pipeline_id": pipeline["pipeline_id"],
        "pipeline_version_id": version["pipeline_version_id"],
    }
    assert run["runtime_config"]["parameters"] == {"input_uri": INPUT}
    # Standalone overlay defaults: no namespace, KFP's pipeline-runner account.
    assert run["service_account"] == "pipeline-runner"
    assert all(e["namespace"] == "" for e in state.experiments.values())


def test_same_package_reuses_its_version_and_experiment_across_pages(package, capsys, tmp_path):
    with FakeKfpServer() as kfp:
        first = ok(submit_args(kfp.url, package), capsys)
        # Two more versions (every task's cache forced on, then off) push the first past page one.
        on = ok(submit_args(kfp.url, package, "--caching", "on"), capsys)
        off = ok(submit_args(kfp.url, package, "--caching", "off"), capsys)
        again = ok(submit_args(kfp.url, package), capsys)
        uploads = [p for m, p in kfp.state.requests if p.endswith("/upload_version")]
        pages = [p for m, p in kfp.state.requests if p.endswith("/versions")]
        versions = next(iter(kfp.state.versions.values()))
        specs = kfp.state.specs
    assert len({first["version_name"], on["version_name"], off["version_name"]}) == 3
    assert again["version_reused"] and again["version_id"] == first["version_id"]
    assert again["experiment_reused"] and again["experiment_id"] == first["experiment_id"]
    assert len(uploads) == 3 and len(versions) == 3
    assert len(pages) > 4  # the last lookup had to follow next_page_token
    off_tasks = specs[off["version_id"]]["root"]["dag"]["tasks"].values()
    assert all(t["cachingOptions"]["enableCache"] is False for t in off_tasks)
    auto_tasks = specs[first["version_id"]]["root"]["dag"]["tasks"]
    # As compiled: prep (mutable input) and export (moves registry aliases) never cached.
    assert not auto_tasks["prep"].get("cachingOptions", {}).get("enableCache", False)
    assert auto_tasks["sampling"]["cachingOptions"]["enableCache"] is True


def test_multi_user_overlay_sends_namespace_and_default_editor(package, capsys):
    with FakeKfpServer(multi_user=True) as kfp:
        code, _, err = run_cli(
            submit_args(kfp.url, package, "--overlay", "multi-user", "--namespace", "team-a"), capsys
        )
        state = kfp.state
    assert code == 0, err
    (pipeline,) = state.pipelines.values()
    assert pipeline["namespace"] == "team-a"
    assert {e["namespace"] for e in state.experiments.values()} == {"team-a"}
    (run,) = state.runs.values()
    assert run["service_account"] == "default-editor"


def test_multi_user_overlay_defaults_to_its_profile_namespace(package, capsys):
    with FakeKfpServer(multi_user=True) as kfp:
        ok(submit_args(kfp.url, package, "--overlay", "multi-user"), capsys)
        namespaces = {p["namespace"] for p in kfp.state.pipelines.values()}
    kustomization = yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "manifests/kfp/multi-user/kustomization.yaml").read_text()
    )
    assert namespaces == {kustomization["namespace"]}


def one_line_failure(args: list[str], capsys, *needles: str) -> str:
    code, out, err = run_cli(args, capsys)
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not out.strip()
    return lines[0]


def test_auth_bearer_and_in_cluster_tokens(package, capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("KFP_TOKEN", raising=False)
    with FakeKfpServer(token="s3cr3t-token") as kfp:
        one_line_failure(submit_args(kfp.url, package), capsys, kfp.url, "HTTP 401")
        monkeypatch.setenv("KFP_TOKEN", "wrong")
        line = one_line_failure(
            submit_args(kfp.url, package, "--auth", "bearer"), capsys, kfp.url, "HTTP 403"
        )
        assert "wrong" not in line
        monkeypatch.setenv("KFP_TOKEN", "s3cr3t-token")
        ok(submit_args(kfp.url, package, "--auth", "bearer"), capsys)
        monkeypatch.delenv("KFP_TOKEN")
        token = tmp_path / "token"
        token.write_text("s3cr3t-token\n")
        ok(submit_args(kfp.url, package, "--auth", "in-cluster", "--token-file", str(token)), capsys)
        assert len(kfp.state.runs) == 2
    one_line_failure(submit_args("http://127.0.0.1:9", package, "--auth", "bearer"), capsys, "KFP_TOKEN")


def test_refused_host_is_one_line_naming_host_and_cause(package, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    host = f"http://127.0.0.1:{port}"  # bound then closed: nothing listens
    one_line_failure(submit_args(host, package), capsys, host, "connection refused")


def test_wrong_endpoint_404_is_one_line(package, capsys):
    with FakeKfpServer() as kfp:
        host = kfp.url + "/not-kfp"
        one_line_failure(submit_args(host, package), capsys, host, "HTTP 404")


@pytest.mark.parametrize(
    ("content", "complaint"),
    [("pipelineInfo: [unclosed\n", "not YAML"), ("kind: Deployment\n", "not a KFP v2 pipeline")],
)
def test_bad_package_fails_before_any_request(tmp_path, capsys, content, complaint):
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    with FakeKfpServer() as kfp:
        one_line_failure(submit_args(kfp.url, bad), capsys, str(bad), complaint)
        assert kfp.state.requests == []


def test_server_side_rejection_of_run_parameters_is_one_line(package, capsys, tmp_path):
    # A package whose pipeline has no `input_uri` parameter: KFP refuses the run with HTTP 400.
    docs = list(yaml.safe_load_all(package.read_text()))
    del docs[0]["root"]["inputDefinitions"]["parameters"]["input_uri"]
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    with FakeKfpServer() as kfp:
        one_line_failure(submit_args(kfp.url, other), capsys, kfp.url, "HTTP 400", "input_uri")


def test_an_html_error_page_from_a_proxy_is_still_one_line(package, capsys):
    # What an auth proxy (oauth2-proxy, Istio) in front of KFP answers: HTML, several lines.
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Proxy(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            body = b"<html>\n<head><title>403 Forbidden</title></head>\n<body>denied</body>\n</html>\n"
            self.send_response(403)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host = f"http://127.0.0.1:{server.server_address[1]}"
        one_line_failure(submit_args(host, package), capsys, host, "HTTP 403", "<html>")
    finally:
        server.shutdown()
        server.server_close()
