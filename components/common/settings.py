"""Runtime settings from the environment (or Kubernetes Secrets mounted as env).

Secrets are `SecretStr`: they never appear in reprs, logs or KFP parameters. Production points
these at real S3/MLflow; the embedded stack (`prodtune services start`) exports the same names.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRODTUNE_", extra="ignore", frozen=True)

    # Local state of the embedded stack: data dirs, generated credentials, pid files, logs.
    home: Path = Field(default=Path(".prodtune"))

    mlflow_tracking_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("PRODTUNE_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI")
    )
    mlflow_experiment: str = "prodtune"

    s3_endpoint_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("PRODTUNE_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
    )
    s3_bucket: str = "prodtune"
    s3_region: str = Field(
        default="us-east-1", validation_alias=AliasChoices("PRODTUNE_S3_REGION", "AWS_REGION")
    )
    aws_access_key_id: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("PRODTUNE_S3_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID")
    )
    aws_secret_access_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("PRODTUNE_S3_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY")
    )


def get_settings() -> Settings:
    return Settings()
