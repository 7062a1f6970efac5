"""Configuration from the environment (``COACHPAY_`` prefix, ``.env`` allowed)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigurationError

PayoutSchedule = Literal["instant", "daily", "weekly", "monthly"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="COACHPAY_", env_file=".env", extra="ignore", frozen=True
    )

    # No URL: an embedded PostgreSQL (pgserver) in ``data_dir``.
    database_url: str | None = None
    data_dir: Path = Path(".coachpay")
    db_pool_size: int = Field(default=10, ge=1, le=200)

    # No secret key: the built-in Stripe emulator is started and used.
    stripe_secret_key: SecretStr | None = None
    stripe_api_base: str | None = None
    stripe_webhook_secret: SecretStr = SecretStr("whsec_coachpay_platform_dev")
    stripe_connect_webhook_secret: SecretStr = SecretStr("whsec_coachpay_connect_dev")
    stripe_max_retries: int = Field(default=3, ge=0, le=10)
    stripe_timeout_seconds: float = Field(default=20.0, gt=0, le=120)
    emulator_port: int = Field(default=12111, ge=1, le=65535)

    jwt_secret: SecretStr = SecretStr("coachpay-dev-secret-change-me-0123456789")
    jwt_ttl_minutes: int = Field(default=60 * 12, ge=1)

    public_url: str = "http://127.0.0.1:8000"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    platform_fee_bps: int = Field(default=2000, ge=0, le=10_000)
    hold_hours: int = Field(default=72, ge=0, le=2160)
    default_currency: str = "usd"
    checkout_expiry_minutes: int = Field(default=30, ge=30, le=24 * 60)
    refund_window_hours: int = Field(default=24, ge=0)

    run_jobs: bool = True
    release_interval_seconds: int = Field(default=60, ge=1)
    payout_interval_seconds: int = Field(default=300, ge=1)
    webhook_retry_interval_seconds: int = Field(default=30, ge=1)
    # background: process after the 200 in the web process; off: only store, the
    # jobs (coachpay worker) process at once; inline: process before the 200.
    webhook_processing: Literal["background", "off", "inline"] = "background"
    job_batch_size: int = Field(default=500, ge=1, le=10_000)
    # Stripe keeps idempotency keys for 24 h; after that an unsettled payout
    # is looked up by metadata before a new transfer is attempted.
    stripe_idempotency_window_hours: int = Field(default=24, ge=1)

    ledger_hot_slots: int = Field(default=16, ge=1, le=256)
    log_level: str = "INFO"

    @field_validator("default_currency")
    @classmethod
    def _lower_currency(cls, v: str) -> str:
        from core.money import currency_exponent

        currency_exponent(v.lower())
        return v.lower()

    @property
    def uses_emulator(self) -> bool:
        return self.stripe_secret_key is None

    # Observability and deployment.
    # production: JSON logs by default, /metrics never open without a credential.
    env: Literal["development", "production"] = "development"
    # json or console; unset: json in production, console otherwise.
    log_format: Literal["json", "console"] | None = None
    # A bearer token for GET /metrics (the admin role works too).
    metrics_token: SecretStr | None = None
    # Also serve /metrics, with no credential, on this port of COACHPAY_HOST.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning a validation error into one clear message per bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "COACHPAY_" + "_".join(str(p) for p in err["loc"]).upper()
            lines.append(f"{name}: {err['msg']}")
        raise ConfigurationError("invalid configuration: " + "; ".join(lines)) from None
