"""A protocol-faithful Ollama server on 127.0.0.1 for tests and benchmarks (no live Ollama is reachable).

It speaks `/api/chat` (NDJSON stream, or one JSON body), `/api/tags` and `/api/version` in the shapes
of Ollama's API docs (see tests/data/ollama/README.md), generates a fixed reply word by word with a
configurable per-reply latency, honours `options.num_predict` (then `done_reason: "length"`), serves at
most `parallel` replies at once like `OLLAMA_NUM_PARALLEL` (others queue), answers 404 for a model it
does not have, and stops generating when the client disconnects, as Ollama does. It records what
happened: requests, the most replies in flight at once, and replies abandoned by their clients.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_REPLY = "It is a three layer ballet tutu, 12 inches long, with an elastic waist."


@dataclass
class OllamaLog:
    requests: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    completed: int = 0
    abandoned: int = 0  # the client went away mid-reply: generation stopped
    tokens_sent: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeOllama:
    def __init__(
        self,
        models: tuple[str, ...] = ("prodtune-describer:champion", "prodtune-qa:champion"),
        *,
        reply: str | Callable[[dict[str, Any]], str] = DEFAULT_REPLY,
        latency_s: float = 0.0,
        parallel: int = 1,
    ) -> None:
        self.models, self.reply, self.latency_s = models, reply, latency_s
        self.slots = threading.Semaphore(parallel)
        self.log = OllamaLog()
        self.url = ""

    def text_for(self, body: dict[str, Any]) -> str:
        return self.reply(body) if callable(self.reply) else self.reply

    @contextlib.contextmanager
    def running(self) -> Iterator[FakeOllama]:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        httpd.daemon_threads = True
        thread = threading.Thread(target=httpd.serve_forever, name="fake-ollama", daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{httpd.server_address[1]}"
        try:
            yield self
        finally:
            httpd.shutdown()
            httpd.server_close()
            thread.join(timeout=10)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _final(model: str, prompt_tokens: int, eval_count: int, reason: str, started: float, text: str | None):
    body: dict[str, Any] = {
        "model": model,
        "created_at": _now(),
        "message": {"role": "assistant", "content": ""},
    }
    if text is not None:  # the non-streamed reply carries the whole message
        body["message"]["content"] = text
    took = int((time.monotonic() - started) * 1e9)
    body.update(
        done_reason=reason,
        done=True,
        total_duration=took,
        load_duration=0,
        prompt_eval_count=prompt_tokens,
        prompt_eval_duration=0,
        eval_count=eval_count,
        eval_duration=took,
    )
    return body


def _handler(server: FakeOllama) -> type[BaseHTTPRequestHandler]:
    log = server.log

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _json(self, status: int, body: dict[str, Any]) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:
            if self.path == "/api/version":
                self._json(200, {"version": "0.12.0-fake"})
            elif self.path == "/api/tags":
                self._json(200, {"models": [{"name": m, "model": m} for m in server.models]})
            else:
                self._json(404, {"error": "404 page not found"})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            with log.lock:
                log.requests.append({"path": self.path, "body": body, "headers": dict(self.headers)})
            if self.path != "/api/chat":
                self._json(404, {"error": "404 page not found"})
                return
            if body.get("model") not in server.models:
                self._json(404, {"error": f'model "{body.get("model")}" not found, try pulling it first'})
                return
            with server.slots:  # OLLAMA_NUM_PARALLEL: the rest queue here
                self._generate(body)

        def _generate(self, body: dict[str, Any]) -> None:
            words = [w + " " for w in server.text_for(body).split()]
            limit = int((body.get("options") or {}).get("num_predict") or len(words))
            reason = "length" if limit < len(words) else "stop"
            words = words[:limit]
            prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
            delay = server.latency_s / max(1, len(words))
            with log.lock:
                log.in_flight += 1
                log.max_in_flight = max(log.max_in_flight, log.in_flight)
            started = time.monotonic()
            try:
                if body.get("stream", True):
                    self._stream(body["model"], words, delay, prompt_tokens, reason, started)
                else:
                    time.sleep(server.latency_s)
                    text = "".join(words).strip()
                    self._json(200, _final(body["model"], prompt_tokens, len(words), reason, started, text))
                with log.lock:
                    log.completed += 1
            except (BrokenPipeError, ConnectionResetError):
                with log.lock:
                    log.abandoned += 1
            finally:
                with log.lock:
                    log.in_flight -= 1

        def _stream(
            self, model: str, words: list[str], delay: float, prompt: int, reason: str, t0: float
        ) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

            def line(obj: dict[str, Any]) -> None:
                raw = json.dumps(obj).encode() + b"\n"
                self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
                self.wfile.flush()

            for i, word in enumerate(words):
                time.sleep(delay)
                piece = word if i < len(words) - 1 else word.rstrip()
                line(
                    {
                        "model": model,
                        "created_at": _now(),
                        "message": {"role": "assistant", "content": piece},
                        "done": False,
                    }
                )
                with log.lock:
                    log.tokens_sent += 1
            line(_final(model, prompt, len(words), reason, t0, None))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

    return Handler
