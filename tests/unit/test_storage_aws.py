"""AWS and IRSA: an empty or absent S3 endpoint is AWS's own, empty or absent keys are boto3's chain.

Kubernetes hands a step `PRODTUNE_S3_ENDPOINT_URL=""` from a ConfigMap set for AWS, and no key
variables at all when the optional prodtune-s3 Secret is absent (IRSA). No request is sent: the
tests look at the client boto3 builds and at the credential provider it picked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from components.common import storage
from components.common.settings import Settings
from components.common.storage import S3Store

AWS_VARS = (
    "PRODTUNE_S3_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "PRODTUNE_S3_ACCESS_KEY_ID",
    "PRODTUNE_S3_SECRET_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for var in AWS_VARS:
        monkeypatch.delenv(var, raising=False)
    # No stray credentials from this machine.
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


@pytest.mark.parametrize("endpoint", [None, "", "  "])
def test_empty_or_absent_endpoint_is_aws_default(clean_env: pytest.MonkeyPatch, endpoint: str | None) -> None:
    if endpoint is not None:
        clean_env.setenv("PRODTUNE_S3_ENDPOINT_URL", endpoint)
    clean_env.setenv("AWS_REGION", "eu-west-1")
    settings = Settings()
    assert settings.s3_endpoint_url is None
    client = S3Store.from_settings(settings).client
    assert client.meta.endpoint_url == "https://s3.eu-west-1.amazonaws.com"
    assert client.meta.config.s3 in (None, {})  # virtual-host addressing, as AWS wants


def test_an_explicit_endpoint_keeps_path_style(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PRODTUNE_S3_ENDPOINT_URL", "http://minio.prodtune.svc.cluster.local:9000")
    client = S3Store.from_settings().client
    assert client.meta.endpoint_url == "http://minio.prodtune.svc.cluster.local:9000"
    assert client.meta.config.s3 == {"addressing_style": "path"}


def test_irsa_web_identity_is_used_when_no_keys_are_given(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # What EKS injects into a pod whose service account has an IAM role (the Secret is absent).
    token = tmp_path / "token"
    token.write_text("eyJ.fake.jwt")
    clean_env.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/prodtune-steps")
    clean_env.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    clean_env.setenv("AWS_ACCESS_KEY_ID", "")  # an optional Secret key that came out empty
    settings = Settings()
    assert settings.aws_access_key_id is None and settings.aws_secret_access_key is None
    client = S3Store.from_settings(settings).client
    creds = client._request_signer._credentials
    assert creds.method == "assume-role-with-web-identity"


def test_keys_from_the_secret_win(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "secret-example")
    creds = S3Store.from_settings().client._request_signer._credentials
    assert creds.access_key == "AKIAEXAMPLE" and creds.method == "explicit"


def test_storage_fetch_cli_passes_local_paths_and_fails_in_one_line(tmp_path: Path, capsys) -> None:
    local = tmp_path / "trn-processed.parquet"
    local.write_bytes(b"PAR1")
    assert storage.main(["fetch", str(local), str(tmp_path / "work")]) == 0
    assert capsys.readouterr().out.strip() == str(local)
    assert storage.main(["fetch", str(tmp_path / "missing.parquet"), str(tmp_path / "work")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.parquet" in err[0]
