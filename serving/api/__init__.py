"""The OpenAI-compatible HTTP API (`create_app`) over a `Responder` (the router graph, or a fake in tests)."""
