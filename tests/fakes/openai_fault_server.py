"""A real HTTP server on 127.0.0.1 that answers like the OpenAI chat API and injects faults.

It reads the product title/description out of the prompt and answers with Q&A pairs copied from
that text (so they pass the grounding filter), unless the schedule says otherwise. Faults:

    ok          a valid reply
    500_format  HTTP 500 whose body quotes the request (`response_format` included) without refusing
                it: an internal error, not an "unsupported" answer
    429         HTTP 429 with `Retry-After: <retry_after>` seconds
    500, 503    HTTP 5xx with an OpenAI-style error body
    malformed   HTTP 200 whose body is not JSON (a truncated proxy reply)
    invalid     HTTP 200, valid body, message content is JSON of the wrong shape
    prose       HTTP 200, valid body, message content is not JSON at all
    ungrounded  HTTP 200, valid pairs whose answers invent facts the product text does not state
    drop        the connection is closed without any response
    hang        no reply for `hang_s` seconds (drives client timeouts)

The schedule is per product (the n-th request for uid X gets `per_uid[X][n]`, "ok" past the end)
or per request number (`by_request[n]`, 1-based), or any callable `(uid, n_uid, n_total) -> fault`.
`served_models` is what GET /v1/models lists (None, the default: it answers 404 there, like a
gateway that lists nothing, and serves any model); with `unknown_model_status` set, a chat request
for any other model gets that status (a stock llama.cpp server answers 500). `reject_json_schema`
answers `response_format: json_schema` with `reject_status` and an explicit refusal.
Every request is logged (uid, fault, time) in `log` before it is answered; tests assert on it.
`max_in_flight` is the most requests the server was answering at once.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

UID_HEADER = "X-Prodtune-Uid"
_TITLE = re.compile(r"^Title: (.*)$", re.MULTILINE)
_DESC = re.compile(r"^Description: (.*?)(?:\nFacts:|\Z)", re.MULTILINE | re.DOTALL)
_K = re.compile(r"Write (\d+) question")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class LoggedRequest:
    uid: str
    fault: str
    at: float
    response_format: str | None


def grounded_pairs(user_prompt: str, default_k: int = 3) -> list[dict[str, str]]:
    """Pairs whose answers are sentences of the description (or the title), as a good teacher would."""
    title_m, desc_m, k_m = _TITLE.search(user_prompt), _DESC.search(user_prompt), _K.search(user_prompt)
    title = title_m.group(1).strip() if title_m else "this product"
    desc = desc_m.group(1).strip() if desc_m else ""
    k = int(k_m.group(1)) if k_m else default_k
    sentences = [s.strip() for s in _SENTENCE.split(desc) if len(s.split()) >= 3]
    pairs = [
        {"question": f"What does the description say about {title}, point {i + 1}?", "answer": s}
        for i, s in enumerate(sentences[:k])
    ]
    if len(pairs) < k:
        pairs.append({"question": f"What is the full name of {title}?", "answer": f"{title}."})
    return pairs[:k]


class FaultServer:
    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        per_uid: dict[str, list[str]] | None = None,
        by_request: dict[int, str] | None = None,
        schedule: Callable[[str, int, int], str] | None = None,
        retry_after: float = 0.05,
        hang_s: float = 5.0,
        api_key: str | None = None,
        reject_json_schema: bool = False,
        reject_status: int = 400,
        served_models: tuple[str, ...] | None = None,
        unknown_model_status: int | None = None,
    ) -> None:
        self.latency_s = latency_s
        self.per_uid = per_uid or {}
        self.by_request = by_request or {}
        self.schedule = schedule
        self.retry_after = retry_after
        self.hang_s = hang_s
        self.api_key = api_key
        self.reject_json_schema = reject_json_schema
        self.reject_status = reject_status  # OpenAI says 400; llama-cpp-python's server says 500
        self.served_models = served_models
        self.unknown_model_status = unknown_model_status
        self.models_requests = 0
        self.log: list[LoggedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> FaultServer:
        handler = type("Handler", (_Handler,), {"fault_server": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    # -- log queries ------------------------------------------------------------------------
    def uids(self, since: int = 0) -> list[str]:
        with self._lock:
            return [r.uid for r in self.log[since:]]

    def count(self) -> int:
        with self._lock:
            return len(self.log)

    # -- decisions --------------------------------------------------------------------------
    def _decide(self, uid: str, response_format: str | None) -> str:
        with self._lock:
            n_uid = sum(1 for r in self.log if r.uid == uid)
            n_total = len(self.log) + 1
            if self.reject_json_schema and response_format == "json_schema":
                fault = "reject_format"
            elif self.schedule is not None:
                fault = self.schedule(uid, n_uid, n_total)
            elif n_total in self.by_request:
                fault = self.by_request[n_total]
            else:
                faults = self.per_uid.get(uid, [])
                fault = faults[n_uid] if n_uid < len(faults) else "ok"
            self.log.append(LoggedRequest(uid, fault, time.time(), response_format))
            return fault


class _Server(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: a burst of new connections would overflow it and
    # the client would wait ~1 s for a SYN retransmit, which is a fake-server artefact, not a fault.
    request_queue_size = 128


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the openai client expects
    fault_server: FaultServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        body = {"error": {"message": message, "type": "fault_injection", "code": status}}
        self._send(status, json.dumps(body).encode(), headers)

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            srv = self.fault_server
            with srv._lock:
                srv.models_requests += 1
            if srv.served_models is None:  # like a gateway that serves any model and lists none
                return self._error(404, "not found")
            data = [{"id": m, "object": "model", "owned_by": "me"} for m in srv.served_models]
            self._send(200, json.dumps({"object": "list", "data": data}).encode())
        else:
            self._error(404, "not found")

    def do_POST(self) -> None:
        srv = self.fault_server
        with srv._lock:
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        try:
            self._post(srv)
        finally:
            with srv._lock:
                srv.in_flight -= 1

    def _post(self, srv: FaultServer) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        request = json.loads(self.rfile.read(length) or b"{}")
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._error(404, "not found")
        if srv.api_key and self.headers.get("Authorization") != f"Bearer {srv.api_key}":
            return self._error(401, "invalid api key")
        fmt = (request.get("response_format") or {}).get("type")
        if srv.unknown_model_status and request.get("model") not in (srv.served_models or ()):
            return self._error(srv.unknown_model_status, "Internal Server Error")
        fault = srv._decide(self.headers.get(UID_HEADER, "?"), fmt)
        if fault == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return None
        time.sleep(srv.hang_s if fault == "hang" else srv.latency_s)
        if fault == "reject_format":
            return self._error(srv.reject_status, "response_format: input should be 'text' or 'json_object'")
        if fault == "429":
            return self._error(429, "rate limited", {"Retry-After": f"{srv.retry_after:g}"})
        if fault in ("500", "503"):
            return self._error(int(fault), "server error")
        if fault == "500_format":
            return self._error(500, f"internal error: KV cache full (request had response_format={fmt})")
        if fault == "malformed":
            return self._send(200, b'{"id": "chatcmpl-x", "choices": [{"message": {"content": "{\\"pa')
        # the last user message is the product (earlier ones are worked examples)
        user = next(
            (m["content"] for m in reversed(request.get("messages", [])) if m.get("role") == "user"), ""
        )
        content = {
            "invalid": json.dumps({"pairs": "none"}),
            "prose": "Sure! Here are some questions about the product.",
            "ungrounded": json.dumps(
                {
                    "pairs": [
                        {
                            "question": "What is it made of?",
                            "answer": "It is waterproof and ships with a tiara.",
                        }
                    ]
                }
            ),
        }.get(fault) or json.dumps({"pairs": grounded_pairs(user)})
        prompt_chars = sum(len(m.get("content", "")) for m in request.get("messages", []))
        body = {
            "id": f"chatcmpl-{srv.count()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", "fault-model"),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ],
            "usage": {
                "prompt_tokens": prompt_chars // 4,
                "completion_tokens": len(content) // 4,
                "total_tokens": prompt_chars // 4 + len(content) // 4,
            },
        }
        return self._send(200, json.dumps(body).encode())


def main() -> None:
    """`python -m tests.fakes.openai_fault_server --latency 0.2` serves until interrupted."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    with FaultServer(latency_s=args.latency) as srv:
        print(srv.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
