"""WeaviateStore through the real weaviate-client v4, against replayed Weaviate payloads.

A real HTTP server (REST: meta, schema) and a real gRPC server (Search, BatchObjects, Aggregate,
health) on 127.0.0.1 serve the payloads in tests/data/weaviate/; the client builds and parses every
request and reply itself. The payloads were written to Weaviate's shapes, not captured from a live
server (see tests/data/weaviate/README.md).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

weaviate = pytest.importorskip("weaviate")
from google.protobuf import json_format  # noqa: E402
from weaviate.proto.v1 import (  # noqa: E402
    aggregate_pb2,
    batch_pb2,
    health_weaviate_pb2,
    search_get_pb2,
    weaviate_pb2_grpc,
)

from serving.config import ServingSettings  # noqa: E402
from serving.retrieval.weaviate_store import WeaviateStore, connect_weaviate  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data" / "weaviate"


def _load(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


class ReplayWeaviate:
    """Serves recorded replies and keeps every request it received."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, Any]] = []
        self.collection_exists = False
        self.batch_reply = "batch_reply_ok.json"
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        weaviate_pb2_grpc.add_WeaviateServicer_to_server(self._servicer(), self._grpc)
        health = grpc.unary_unary_rpc_method_handler(
            lambda req, ctx: health_weaviate_pb2.WeaviateHealthCheckResponse(status=1),
            request_deserializer=health_weaviate_pb2.WeaviateHealthCheckRequest.FromString,
            response_serializer=health_weaviate_pb2.WeaviateHealthCheckResponse.SerializeToString,
        )
        self._grpc.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": health}),)
        )
        self.grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()

    @property
    def http_port(self) -> int:
        return self._http.server_address[1]

    def close(self) -> None:
        self._grpc.stop(0)
        self._http.shutdown()
        self._http.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(size)) if size else None
                replay.requests.append((f"{self.command} {self.path}", body))
                status, payload = 404, None
                if self.path == "/v1/meta":
                    status, payload = 200, _load("meta.json")
                elif self.path == "/v1/schema/Product" and replay.collection_exists:
                    status, payload = 200, _load("schema_product.json")
                elif self.path == "/v1/schema" and self.command == "POST":
                    replay.collection_exists = True
                    status, payload = 200, _load("schema_product.json")
                data = json.dumps(payload).encode() if payload is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _reply

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def _servicer(self) -> weaviate_pb2_grpc.WeaviateServicer:
        replay = self

        class Servicer(weaviate_pb2_grpc.WeaviateServicer):
            def Search(self, request: Any, context: Any) -> Any:
                replay.requests.append(("grpc Search", json_format.MessageToDict(request)))
                return json_format.ParseDict(_load("search_reply.json"), search_get_pb2.SearchReply())

            def BatchObjects(self, request: Any, context: Any) -> Any:
                replay.requests.append(("grpc BatchObjects", json_format.MessageToDict(request)))
                return json_format.ParseDict(_load(replay.batch_reply), batch_pb2.BatchObjectsReply())

            def Aggregate(self, request: Any, context: Any) -> Any:
                replay.requests.append(("grpc Aggregate", json_format.MessageToDict(request)))
                return json_format.ParseDict(_load("aggregate_reply.json"), aggregate_pb2.AggregateReply())

        return Servicer()


@pytest.fixture()
def replay() -> Iterator[ReplayWeaviate]:
    server = ReplayWeaviate()
    yield server
    server.close()


@pytest.fixture()
def store(replay: ReplayWeaviate) -> Iterator[WeaviateStore]:
    settings = ServingSettings(
        weaviate_http_host="127.0.0.1",
        weaviate_http_port=replay.http_port,
        weaviate_grpc_host="127.0.0.1",
        weaviate_grpc_port=replay.grpc_port,
    )
    with connect_weaviate(settings) as client:
        yield WeaviateStore(client, "Product")


def _calls(replay: ReplayWeaviate, prefix: str) -> list[Any]:
    return [body for name, body in replay.requests if name.startswith(prefix)]


def test_creates_collection_with_cosine_and_self_provided_vectors(replay, store):
    store.ensure_collection()
    [created] = _calls(replay, "POST /v1/schema")
    assert created["class"] == "Product"
    assert [p["name"] for p in created["properties"]] == ["uid", "title", "content"]
    vec = created["vectorConfig"]["default"]
    assert vec["vectorizer"] == {"none": {}}
    assert vec["vectorIndexConfig"]["distance"] == "cosine"


def test_existing_collection_is_not_recreated(replay, store):
    replay.collection_exists = True
    store.ensure_collection()
    assert _calls(replay, "POST /v1/schema") == []


def test_add_sends_uids_as_properties_with_deterministic_uuids(replay, store):
    vectors = np.array([[3.0, 4.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]], dtype=np.float32)
    store.add(["0000031909", "B00F9XLE8Q"], ["Tutu", "Skillet"], ["pink", "iron"], vectors)
    [batch] = _calls(replay, "grpc BatchObjects")
    objects = batch["objects"]
    assert [o["properties"]["nonRefProperties"]["uid"] for o in objects] == ["0000031909", "B00F9XLE8Q"]
    assert {o["collection"] for o in objects} == {"Product"}
    from weaviate.util import generate_uuid5

    assert objects[0]["uuid"] == generate_uuid5("0000031909")
    # Vectors travel normalised, as float32 bytes.
    import base64

    sent = np.frombuffer(base64.b64decode(objects[0]["vectorBytes"]), dtype=np.float32)
    np.testing.assert_allclose(sent, [0.6, 0.8, 0.0, 0.0], rtol=1e-6)


def test_add_raises_when_weaviate_rejects_objects(replay, store):
    replay.batch_reply = "batch_reply_error.json"
    with pytest.raises(RuntimeError, match="rejected 1 of 2 objects: vector lengths"):
        store.add(["a", "b"], ["A", "B"], ["", ""], np.eye(2, 4, dtype=np.float32))


def test_search_maps_distance_to_cosine_and_honours_threshold(replay, store):
    hits = store.search(np.ones(4, dtype=np.float32), k=3, min_score=0.5)
    [search] = _calls(replay, "grpc Search")
    assert search["limit"] == 3
    assert search["metadata"]["distance"] is True
    assert sorted(search["properties"]["nonRefProperties"]) == ["content", "title", "uid"]
    assert search["nearVector"]["distance"] == pytest.approx(0.5, abs=1e-4)
    # The replayed reply has distances 0.1234, 0.5 and 0.62: scores 0.8766, 0.5 (the boundary, kept)
    # and 0.38 (below the threshold, dropped on our side even though the server sent it).
    assert [h.uid for h in hits] == ["B00F9XLE8Q", "0000031909"]
    assert hits[0].score == pytest.approx(1 - 0.1234, abs=1e-6)
    assert hits[1].score == 0.5
    assert hits[0].title.startswith("Lodge L8SK3")


def test_search_just_above_boundary_drops_boundary_hit(store):
    hits = store.search(np.ones(4, dtype=np.float32), k=3, min_score=0.5001)
    assert [h.uid for h in hits] == ["B00F9XLE8Q"]


def test_search_without_threshold_sends_no_distance_cut(replay, store):
    hits = store.search(np.ones(4, dtype=np.float32), k=3)
    [search] = _calls(replay, "grpc Search")
    assert "distance" not in search["nearVector"]
    assert len(hits) == 3


def test_count_uses_aggregate(replay, store):
    replay.collection_exists = True
    assert store.count() == 2
    assert _calls(replay, "grpc Aggregate")
