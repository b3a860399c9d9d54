"""Shared fixtures for integration tests that need real S3 and a real MLflow server.

Fixtures (use these names; other integration tests depend on them):

- `embedded_stack` (session scope): an `EmbeddedStack` (SeaweedFS S3 + MLflow server) started
  in a temp dir on free ports, so it never collides with a developer's `prodtune services start`
  on the default ports. One stack serves the whole session; it is stopped at the end.
  Attributes a test may use: `.env()`, `.s3_endpoint_url`, `.tracking_uri`, `.bucket`, `.home`.
- `stack_env` (function scope): sets the variables of `embedded_stack.env()` in `os.environ`
  (`MLFLOW_TRACKING_URI`, `PRODTUNE_S3_ENDPOINT_URL`, `PRODTUNE_S3_BUCKET`, `AWS_ACCESS_KEY_ID`,
  `AWS_SECRET_ACCESS_KEY`) for one test and restores the previous environment afterwards. It also
  removes variables that would override them (`AWS_ENDPOINT_URL`, `PRODTUNE_S3_ACCESS_KEY_ID`, ...).
  Yields the dict, handy as `env=` for a subprocess: `subprocess.run(..., env={**os.environ})`.
- `s3_store` (function scope): `components.common.storage.S3Store.from_settings()` under `stack_env`.

A stack that fails to start fails every test that uses it, with the service's log tail.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from components.common.settings import Settings
from components.common.storage import S3Store
from pipelines.embedded.stack import SHADOWING_VARS, EmbeddedStack


@pytest.fixture(scope="session")
def embedded_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    stack = EmbeddedStack.with_free_ports(tmp_path_factory.mktemp("prodtune-home"))
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def stack_env(embedded_stack: EmbeddedStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    env = embedded_stack.env()
    for name in SHADOWING_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield env


@pytest.fixture
def s3_store(stack_env: dict[str, str]) -> S3Store:
    return S3Store.from_settings(Settings())
