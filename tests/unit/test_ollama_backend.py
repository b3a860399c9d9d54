"""OllamaBackend against a real HTTP server on 127.0.0.1 replaying recorded /api/chat bodies.

The payloads in tests/data/ollama/ are shaped exactly like real Ollama responses (see its README);
the backend was not run against a live Ollama here.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from serving.llm.errors import BackendError, BackendUnavailable
from serving.llm.ollama_backend import OllamaBackend

DATA = Path(__file__).resolve().parents[1] / "data" / "ollama"
MESSAGES = [
    {"role": "system", "content": "You answer customer questions about products."},
    {"role": "user", "content": "How long is the ballet tutu?"},
]


class Replay:
    """What the fake Ollama answers next, and every request it saw."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b""
        self.ndjson = False
        self.requests: list[dict[str, Any]] = []


def _handler(replay: Replay) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            replay.requests.append(
                {"path": self.path, "body": json.loads(raw), "headers": dict(self.headers)}
            )
            self.send_response(replay.status)
            if replay.ndjson:  # Ollama streams NDJSON with chunked transfer encoding
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for line in replay.body.splitlines(keepends=True):
                    self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(replay.body)))
                self.end_headers()
                self.wfile.write(replay.body)

        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, Replay]]:
    replay = Replay()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(replay))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", replay
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_chat_sends_model_messages_options_and_parses_reply(server: tuple[str, Replay]) -> None:
    host, replay = server
    replay.body = (DATA / "chat.json").read_bytes()
    backend = OllamaBackend("prodtune-qa:champion", host=host, keep_alive="10m", options={"num_ctx": 2048})
    result = backend.chat(MESSAGES, max_tokens=64, temperature=0.2)

    req = replay.requests[-1]
    assert req["path"] == "/api/chat"
    body = req["body"]
    assert body["model"] == "prodtune-qa:champion"
    assert body["messages"] == MESSAGES
    assert body["stream"] is True  # always streamed: the last line has the usage; closing it cancels
    assert body["options"] == {"num_ctx": 2048, "num_predict": 64, "temperature": 0.2}
    assert body["keep_alive"] == "10m"

    assert result.text == "It is a three layer ballet tutu, 12 inches long, with an elastic waist."
    assert result.model == "prodtune-qa:champion"
    assert (result.prompt_tokens, result.completion_tokens) == (34, 12)
    assert result.finish_reason == "stop"
    assert result.extra["total_duration_ns"] == 2254970291


def test_truncated_reply_maps_to_length(server: tuple[str, Replay]) -> None:
    host, replay = server
    replay.body = (DATA / "chat-length.json").read_bytes()
    result = OllamaBackend("prodtune-describer:champion", host=host).chat(MESSAGES, max_tokens=8)
    assert result.finish_reason == "length"
    assert replay.requests[-1]["body"]["options"]["num_predict"] == 8


def test_stream_yields_pieces_from_ndjson(server: tuple[str, Replay]) -> None:
    host, replay = server
    replay.body = (DATA / "chat-stream.ndjson").read_bytes()
    replay.ndjson = True
    pieces = list(OllamaBackend("prodtune-qa:champion", host=host).stream(MESSAGES, max_tokens=32))
    assert pieces == ["It", " is", " 12", " inches", " long."]
    assert replay.requests[-1]["body"]["stream"] is True
    assert replay.requests[-1]["path"] == "/api/chat"


def test_missing_model_is_a_backend_error(server: tuple[str, Replay]) -> None:
    host, replay = server
    replay.status = 404
    replay.body = (DATA / "error-model-not-found.json").read_bytes()
    backend = OllamaBackend("prodtune-qa:champion", host=host)
    with pytest.raises(BackendError, match=r"not found, try pulling it first.*HTTP 404"):
        backend.chat(MESSAGES)
    with pytest.raises(BackendError, match="not found"):
        list(backend.stream(MESSAGES))


def test_error_line_inside_a_stream_is_a_backend_error(server: tuple[str, Replay]) -> None:
    host, replay = server
    first = (DATA / "chat-stream.ndjson").read_bytes().splitlines(keepends=True)[0]
    replay.body = first + b'{"error":"an error was encountered while running the model"}\n'
    replay.ndjson = True
    got: list[str] = []
    with pytest.raises(BackendError, match="running the model"):
        for piece in OllamaBackend("prodtune-qa:champion", host=host).stream(MESSAGES):
            got.append(piece)
    assert got == ["It"]


def test_unreachable_server_is_unavailable() -> None:
    import socket

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = OllamaBackend("prodtune-qa:champion", host=f"http://127.0.0.1:{port}", timeout=5)
    with pytest.raises(BackendUnavailable):
        backend.chat(MESSAGES)
    with pytest.raises(BackendUnavailable):
        list(backend.stream(MESSAGES))


def test_concurrent_replies_up_to_the_servers_parallel_limit() -> None:
    """OLLAMA_NUM_PARALLEL=4 on the server and concurrency 4 in the backend: 8 requests run 4 at a time."""
    import threading

    from tests.fakes.ollama_server import FakeOllama

    with FakeOllama(latency_s=0.4, parallel=4).running() as fake:
        backend = OllamaBackend("prodtune-qa:champion", host=fake.url, concurrency=4, max_waiting=8)
        results = []
        threads = [threading.Thread(target=lambda: results.append(backend.chat(MESSAGES))) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert fake.log.max_in_flight == 4 and fake.log.completed == 8
    assert all(r.finish_reason == "stop" and r.completion_tokens == 14 for r in results)


def test_num_predict_cut_is_length_and_cancel_closes_the_stream() -> None:
    import threading
    import time

    from tests.fakes.ollama_server import FakeOllama

    with FakeOllama(reply=" ".join(["word"] * 400), latency_s=8.0).running() as fake:
        backend = OllamaBackend("prodtune-qa:champion", host=fake.url)
        cut = backend.chat(MESSAGES, max_tokens=3)
        assert (cut.finish_reason, cut.completion_tokens) == ("length", 3)
        cancel = threading.Event()
        pieces: list[str] = []

        def sink(piece: str) -> None:
            pieces.append(piece)
            if len(pieces) == 2:
                cancel.set()

        result = backend.chat(MESSAGES, max_tokens=400, on_token=sink, cancel=cancel)
        deadline = time.monotonic() + 5
        while fake.log.abandoned < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert result.finish_reason == "cancelled" and len(pieces) == 2
    assert fake.log.abandoned == 1 and fake.log.tokens_sent < 100  # the server stopped generating
