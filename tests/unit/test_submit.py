"""`prodtune submit` against a real HTTP server that speaks the KFP v2beta1 REST API.

The fake records every request so the test can assert what a real KFP endpoint would receive:
the experiment lookup/creation, then one run carrying the compiled pipeline spec, the input URI,
the production configs as parameter defaults, and the service account.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from pipelines.compile import submit_run


class FakeKfp(BaseHTTPRequestHandler):
    requests: ClassVar[list[tuple[str, str, dict]]] = []

    def log_message(self, *args):  # keep test output quiet
        pass

    def _reply(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.requests.append(("GET", self.path, {}))
        if self.path.startswith("/apis/v2beta1/experiments"):
            self._reply({"experiments": [], "total_size": 0})
        else:
            self._reply({})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        self.requests.append(("POST", self.path, body))
        if self.path == "/apis/v2beta1/experiments":
            self._reply({"experiment_id": "exp-1", "display_name": body.get("display_name")})
        elif self.path == "/apis/v2beta1/runs":
            self._reply({"run_id": "run-42", "display_name": body.get("display_name"), "state": "PENDING"})
        else:
            self.send_error(404)


@pytest.fixture
def kfp_server():
    FakeKfp.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeKfp)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", FakeKfp.requests
    server.shutdown()
    server.server_close()


def test_submit_creates_experiment_and_run(kfp_server, monkeypatch):
    host, requests = kfp_server
    monkeypatch.delenv("KFP_TOKEN", raising=False)
    run_id = submit_run(
        host,
        "s3://catalogue/trn.json.gz",
        experiment="prodtune-test",
        run_name="nightly",
        service_account="prodtune-pipeline-runner",
    )
    assert run_id == "run-42"
    posts = [(path, body) for method, path, body in requests if method == "POST"]
    assert [p for p, _ in posts] == ["/apis/v2beta1/experiments", "/apis/v2beta1/runs"]
    assert posts[0][1]["display_name"] == "prodtune-test"
    run = posts[1][1]
    assert run["experiment_id"] == "exp-1" and run["display_name"] == "nightly"
    assert run["service_account"] == "prodtune-pipeline-runner"
    assert run["runtime_config"]["parameters"]["input_uri"] == "s3://catalogue/trn.json.gz"
    # Pipeline spec and the Kubernetes platform spec (secrets, node selectors) travel together.
    spec = run["pipeline_spec"]["pipeline_spec"]
    assert spec["pipelineInfo"]["name"] == "prodtune"
    assert "sampling_config" in spec["root"]["inputDefinitions"]["parameters"]
    assert "prodtune-s3" in json.dumps(run["pipeline_spec"]["platform_spec"])
