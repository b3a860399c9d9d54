"""`helm test`: authenticated, routed completions through the router, one per route.

Standard library only (runs in any python3 image). Env: API_URL, API_KEY, DESCRIBE_INPUT,
ANSWER_INPUT, MAX_TOKENS, TIMEOUT. Checks, in order: a request without the key is refused (401);
`prodtune-router` sends DESCRIBE_INPUT to the describer and ANSWER_INPUT to the QA model, each
answering 200 with non-empty content. Prints one line per check; exit 1 on the first failure.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request


def post(url: str, body: dict, key: str | None, timeout: float) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {}


def completion(text: str, max_tokens: int) -> dict:
    return {
        "model": "prodtune-router",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }


def check(env: dict[str, str]) -> list[str]:
    """Run the checks; return the failures (empty: all passed)."""
    url = env["API_URL"].rstrip("/") + "/v1/chat/completions"
    key, timeout = env["API_KEY"], float(env.get("TIMEOUT", "180"))
    max_tokens = int(env.get("MAX_TOKENS", "48"))
    status, _ = post(url, completion("ping", 1), None, timeout)
    if status != 401:
        return [f"no key: expected HTTP 401, got {status}"]
    print("ok: a request without the API key is refused (401)")
    failures = []
    for route, text in (("describe", env["DESCRIBE_INPUT"]), ("answer", env["ANSWER_INPUT"])):
        status, body = post(url, completion(text, max_tokens), key, timeout)
        got = (body.get("prodtune") or {}).get("route")
        content = ((body.get("choices") or [{}])[0].get("message") or {}).get("content") or ""
        if status != 200:
            failures.append(f"{route}: HTTP {status} {json.dumps(body)[:300]}")
        elif got != route:
            failures.append(f"{route}: {text!r} was routed to {got!r}")
        elif not content.strip():
            failures.append(f"{route}: empty completion")
        else:
            print(f"ok: {route} -> {content.strip()[:80]!r}")
    return failures


def main() -> int:
    failures = check(dict(os.environ))
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
