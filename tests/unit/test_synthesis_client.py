import email.utils
import random

import pytest
from pydantic import SecretStr

from components.common.errors import InputError
from components.synthesis.client import RetryPolicy, load_api_key, parse_retry_after, response_format_for
from components.synthesis.core import SynthesisConfig


def test_retry_after_forms():
    assert parse_retry_after({"retry-after": "7"}) == 7.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "7"}) == 0.25
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=1_000_000) == pytest.approx(30.0)
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_backoff_grows_exponentially_with_jitter_and_cap():
    policy = RetryPolicy(max_retries=10, base_delay_s=1.0, max_delay_s=8.0)
    rng = random.Random(0)
    for retry, cap in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (6, 8.0)]:
        delays = [policy.backoff(retry, None, rng) for _ in range(200)]
        assert min(delays) >= cap / 2 and max(delays) <= cap
        assert len(set(delays)) > 150  # jittered, so workers do not retry in lockstep


def test_backoff_never_shorter_than_retry_after():
    policy = RetryPolicy(base_delay_s=0.1, max_delay_s=1.0)
    rng = random.Random(1)
    assert all(policy.backoff(0, 5.0, rng) >= 5.0 for _ in range(50))
    # absurd Retry-After values are capped
    assert policy.backoff(0, 10_000, rng) <= policy.max_retry_after_s + 0.1


def test_api_key_from_env_or_secret_file(tmp_path):
    assert load_api_key("OPENAI_API_KEY", None, {}) is None
    key = load_api_key("TEACHER_KEY", None, {"TEACHER_KEY": "sk-abc"})
    assert isinstance(key, SecretStr) and key.get_secret_value() == "sk-abc"
    assert "sk-abc" not in repr(key) and "sk-abc" not in str(key)
    secret = tmp_path / "api-key"
    secret.write_text("sk-from-file\n")
    assert load_api_key("X", secret, {"X": "ignored"}).get_secret_value() == "sk-from-file"
    with pytest.raises(InputError, match="cannot read API key file"):
        load_api_key("X", tmp_path / "missing", {})


def test_config_refuses_a_key_where_a_variable_name_belongs():
    with pytest.raises(ValueError, match="NAME of an environment variable"):
        SynthesisConfig(api_key_env="sk-proj-abcdef123")


def test_response_format_modes():
    schema, bounded = {"type": "object"}, {"type": "object", "x": 1}
    assert response_format_for("json_schema", schema, bounded)["json_schema"]["schema"] is schema
    assert response_format_for("json_object_schema", schema, bounded) == {
        "type": "json_object",
        "schema": bounded,
    }
    assert response_format_for("none", schema, bounded) is None


def test_only_an_explicit_refusal_counts_as_format_unsupported():
    from components.synthesis.client import is_format_rejection

    llama_cpp = "[{'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\"}]"
    assert is_format_rejection(500, llama_cpp)
    assert is_format_rejection(
        400, "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model."
    )
    assert not is_format_rejection(500, "Internal Server Error")
    assert not is_format_rejection(500, "KV cache full (request had response_format=json_schema)")
    assert not is_format_rejection(503, llama_cpp)  # a 503 is an overloaded server, whatever it says
    echoed = (
        "error in {'messages': [...], 'response_format': {'type': 'json_schema'}}"
        + " x" * 200
        + " unsupported"
    )
    assert not is_format_rejection(500, echoed)  # the phrase must be about the field
