"""Runtime settings from the environment (or Kubernetes Secrets mounted as env).

Secrets are `SecretStr`: they never appear in reprs, logs or KFP parameters. Production points
these at real S3/MLflow; the embedded stack (`prodtune services start`) exports the same names.

AWS and IRSA: an empty or absent S3 endpoint means AWS's own endpoint for the region, and empty or
absent keys mean boto3's credential chain (the pod's IAM role through IRSA / Workload Identity,
instance profile...). Empty values are what Kubernetes gives from a ConfigMap key set to "" or an
optional Secret key, so they count as absent.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
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

    @field_validator("s3_endpoint_url", "mlflow_tracking_uri", mode="before")
    @classmethod
    def _empty_is_absent(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("aws_access_key_id", "aws_secret_access_key", mode="before")
    @classmethod
    def _empty_key_is_absent(cls, value: object) -> object:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("s3_region", mode="before")
    @classmethod
    def _empty_region_is_default(cls, value: object) -> object:
        return "us-east-1" if isinstance(value, str) and not value.strip() else value


def get_settings() -> Settings:
    return Settings()
