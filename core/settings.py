"""Configuration from the environment (``COACHPAY_`` prefix, ``.env`` allowed)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigurationError

PayoutSchedule = Literal["instant", "daily", "weekly", "monthly"]

# Built-in development secrets: anyone who reads the source knows them, so a
# production deployment refuses to start while one is in use.
DEV_JWT_SECRET = "coachpay-dev-secret-change-me-0123456789"
DEV_PLATFORM_WEBHOOK_SECRET = "whsec_coachpay_platform_dev"
DEV_CONNECT_WEBHOOK_SECRET = "whsec_coachpay_connect_dev"
MIN_JWT_SECRET_BYTES = 32  # HS256: a key shorter than the hash is guessable offline
LIVE_KEY_PREFIXES = ("sk_live_", "rk_live_")


def stripe_retry_backoff_seconds(max_retries: int) -> float:
    """The most the Stripe gateway sleeps between its retries: each wait is capped at
    ``RetryPolicy.max_backoff`` (core.stripe_retry), a Retry-After included."""
    from core.stripe_retry import RetryPolicy

    return max_retries * RetryPolicy().max_backoff


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
    stripe_webhook_secret: SecretStr = SecretStr(DEV_PLATFORM_WEBHOOK_SECRET)
    stripe_connect_webhook_secret: SecretStr = SecretStr(DEV_CONNECT_WEBHOOK_SECRET)
    stripe_max_retries: int = Field(default=3, ge=0, le=10)
    stripe_timeout_seconds: float = Field(default=20.0, gt=0, le=120)
    emulator_port: int = Field(default=12111, ge=1, le=65535)

    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_ttl_minutes: int = Field(default=60 * 12, ge=1)
    # Production is declared (COACHPAY_ENV) or implied by a live Stripe key or an
    # https public URL; then production_problems() must be empty to start.
    env: Literal["development", "production"] = "development"

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

    # Failure handling: webhook parking (core.inbox_failures, core.inbox), the payout
    # refusal backoff (payouts.refusals), refund intents (sessions.refund_intents)
    # and where outgoing webhooks may go (core.outbox.ssrf). Passed to the code
    # that uses them, never read from a global.
    webhook_max_handler_failures: int = Field(
        default=8, ge=1, le=100,
        description="handler errors in a row that park an incoming webhook event "
        "(after an admin's replay, one is enough)",
    )  # fmt: skip
    webhook_transient_park_days: int = Field(
        default=7, ge=1, le=90,
        description="how long an event failing only for transient reasons (Stripe or the "
        "database away) is retried before it is parked",
    )  # fmt: skip
    # Below the inbox's 5-minute claim lease (core.inbox.CLAIM_LEASE), so no second
    # worker is handed an event whose handler still runs.
    webhook_handler_timeout_seconds: float = Field(
        default=240.0, gt=0, lt=300,
        description="time one webhook event's handlers may take (a transient failure after)",
    )  # fmt: skip
    payout_refusal_backoff_base_minutes: int = Field(
        default=60, ge=1, le=24 * 60,
        description="wait after a coach's first refused transfer, doubling with each refusal "
        "in a row",
    )  # fmt: skip
    payout_refusal_backoff_cap_hours: int = Field(
        default=24, ge=1, le=24 * 30, description="the longest refusal backoff"
    )  # fmt: skip
    payout_pause_after_refusals: int = Field(
        default=3, ge=1, le=100,
        description="refused transfers in a row that pause a coach's payouts until an admin "
        "resumes them",
    )  # fmt: skip
    refund_replay_window_minutes: int = Field(
        default=60, ge=1, le=24 * 60,
        description="a refund request repeating an earlier one (same amount and reason) within "
        "it gets the first one's refund",
    )  # fmt: skip
    refund_intent_stale_minutes: int = Field(
        default=5, ge=1, le=24 * 60,
        description="after it, an open refund intent is resolved by asking Stripe; must exceed "
        "the Stripe timeout x (retries + 1) plus their backoff",
    )  # fmt: skip
    webhook_allowed_networks: str = Field(
        default="",
        description="comma-separated CIDRs outgoing webhooks may reach although private "
        "(e.g. `10.20.0.0/16`); empty: public addresses only",
    )

    # Identity provider (OIDC access tokens, api/auth.py). All unset: only our
    # own HS256 tokens. Issuer, audience and JWKS URL go together.
    oidc_issuer: str | None = Field(
        default=None,
        description="the identity provider's issuer (`iss`); its tokens are told apart by it",
    )
    oidc_audience: str | None = Field(
        default=None, description="the `aud` provider tokens must carry (unset: not checked)"
    )
    oidc_jwks_url: str | None = Field(
        default=None, description="the provider's JWKS URL (its public signing keys)"
    )
    # Comma-separated; asymmetric only (an HS* name is refused: the JWKS public
    # key must never serve as an HMAC secret).
    oidc_algorithms: str = Field(
        default="RS256,ES256",
        description="algorithms accepted for provider tokens, comma-separated; asymmetric only",
    )
    # The claim holding the provider's role names (a string or a list); a dotted
    # path reaches into objects (Keycloak: realm_access.roles).
    oidc_role_claim: str = Field(
        default="roles",
        description="the claim with the provider's role names (string or list; dotted path "
        "into objects, e.g. `realm_access.roles`)",
    )
    # provider-role=coachpay-role pairs, comma-separated.
    oidc_role_map: str = Field(
        default="",
        description="provider role = coachpay role pairs, comma-separated "
        "(`marketplace-coach=coach,marketplace-finance=finance`)",
    )
    # Seconds: keys are refetched at most this often on an unknown kid, and
    # refreshed anyway when older than the lifespan.
    oidc_jwks_min_refetch_seconds: float = Field(
        default=30.0, ge=0, le=3600,
        description="the provider's keys are refetched for an unknown `kid` at most this often",
    )  # fmt: skip
    oidc_jwks_lifespan_seconds: float = Field(
        default=600.0, ge=1, le=86400,
        description="the provider's keys are refetched when older than this",
    )  # fmt: skip

    @field_validator("oidc_algorithms")
    @classmethod
    def _asymmetric_only(cls, v: str) -> str:
        names = [a.strip() for a in v.split(",") if a.strip()]
        allowed = {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384",
                   "PS512", "EdDSA"}  # fmt: skip
        bad = [a for a in names if a not in allowed]
        if bad or not names:
            raise ValueError(f"only asymmetric algorithms ({', '.join(sorted(allowed))})")
        return ",".join(names)

    @field_validator("oidc_role_map")
    @classmethod
    def _role_map(cls, v: str) -> str:
        for pair in filter(None, (p.strip() for p in v.split(","))):
            name, sep, role = pair.partition("=")
            if not sep or not name.strip() or role.strip() not in (
                "mentee", "coach", "finance", "admin"
            ):  # fmt: skip
                raise ValueError(f"{pair!r}: expected provider-role=mentee|coach|finance|admin")
        return v

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer and self.oidc_jwks_url)

    def oidc_problems(self) -> list[str]:
        """Production checks of the provider block (production_problems)."""
        set_ = [n for n in ("issuer", "jwks_url", "audience") if getattr(self, f"oidc_{n}")]
        if not set_:
            return []
        problems = [
            f"COACHPAY_OIDC_{n.upper()}: not set (the provider's settings go together)"
            for n in ("issuer", "jwks_url", "audience")
            if n not in set_
        ]
        if self.oidc_jwks_url and urlsplit(self.oidc_jwks_url).scheme.lower() != "https":
            problems.append("COACHPAY_OIDC_JWKS_URL: must be https")
        if not self.oidc_roles:
            problems.append("COACHPAY_OIDC_ROLE_MAP: empty (no provider token would get a role)")
        return problems

    @property
    def oidc_roles(self) -> dict[str, str]:
        pairs = (p.partition("=") for p in self.oidc_role_map.split(",") if p.strip())
        return {name.strip(): role.strip() for name, _, role in pairs}

    ledger_hot_slots: int = Field(default=16, ge=1, le=256)
    log_level: str = "INFO"

    @field_validator("default_currency")
    @classmethod
    def _lower_currency(cls, v: str) -> str:
        from core.money import currency_exponent

        currency_exponent(v.lower())
        return v.lower()

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks(cls, v: str) -> str:
        for part in v.split(","):
            if part.strip():
                try:
                    ipaddress.ip_network(part.strip(), strict=False)
                except ValueError:
                    raise ValueError(f"{part.strip()!r} is not an IP network") from None
        return v

    @model_validator(mode="after")
    def _stale_after_stripe_gives_up(self) -> Settings:
        # An intent younger than the longest a Stripe call can take (every retry
        # timing out, with the SDK's backoff between them) may still be in flight:
        # resolving it would look for a refund Stripe is about to make.
        longest = self.stripe_timeout_seconds * (self.stripe_max_retries + 1)
        longest += stripe_retry_backoff_seconds(self.stripe_max_retries)
        if self.refund_intent_stale_minutes * 60 <= longest:
            raise ValueError(
                f"COACHPAY_REFUND_INTENT_STALE_MINUTES: must exceed {longest:.0f} s, the longest a "
                "Stripe call can take (stripe_timeout_seconds x (stripe_max_retries + 1) "
                "plus backoff)"
            )
        return self

    @property
    def uses_emulator(self) -> bool:
        return self.stripe_secret_key is None

    # Observability and deployment.
    # (COACHPAY_ENV above) production: JSON logs by default, /metrics never open
    # without a credential.
    # json or console; unset: json in production, console otherwise.
    log_format: Literal["json", "console"] | None = None
    # A bearer token for GET /metrics (the admin role works too).
    metrics_token: SecretStr | None = None
    # Also serve /metrics, with no credential, on this port of COACHPAY_HOST.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)

    @property
    def is_production(self) -> bool:
        key = self.stripe_secret_key.get_secret_value() if self.stripe_secret_key else ""
        return (
            self.env == "production"
            or key.startswith(LIVE_KEY_PREFIXES)
            or self.public_url.lower().startswith("https://")
        )

    def production_problems(self) -> list[str]:
        """What keeps this configuration from running in production, one line each,
        naming the variable: built-in, short or missing secrets, and the development
        stand-ins (emulator, embedded database, plain http)."""
        problems = []
        jwt_secret = self.jwt_secret.get_secret_value()
        if jwt_secret == DEV_JWT_SECRET:
            problems.append("COACHPAY_JWT_SECRET: the built-in development secret is in use")
        elif len(jwt_secret.encode()) < MIN_JWT_SECRET_BYTES:
            problems.append(
                f"COACHPAY_JWT_SECRET: shorter than {MIN_JWT_SECRET_BYTES} bytes"
                " (use e.g. `openssl rand -hex 32`)"
            )
        for name, value, dev in (
            ("STRIPE_WEBHOOK_SECRET", self.stripe_webhook_secret, DEV_PLATFORM_WEBHOOK_SECRET),
            (
                "STRIPE_CONNECT_WEBHOOK_SECRET",
                self.stripe_connect_webhook_secret,
                DEV_CONNECT_WEBHOOK_SECRET,
            ),
        ):
            secret = value.get_secret_value().strip()
            if not secret:
                problems.append(f"COACHPAY_{name}: not set (the endpoint's signing secret)")
            elif secret == dev:
                problems.append(
                    f"COACHPAY_{name}: the built-in development secret is in use"
                    " (set the endpoint's signing secret from the Stripe dashboard)"
                )
        if self.stripe_secret_key is None or not self.stripe_secret_key.get_secret_value():
            problems.append("COACHPAY_STRIPE_SECRET_KEY: not set (the Stripe emulator would run)")
        if not self.database_url:
            problems.append("COACHPAY_DATABASE_URL: not set (the embedded database would run)")
        problems.extend(self.oidc_problems())
        if urlsplit(self.public_url).scheme.lower() != "https":
            problems.append(
                "COACHPAY_PUBLIC_URL: must be https (the session cookie is sent over it)"
            )
        return problems

    def check_production(self) -> None:
        """ConfigurationError naming every problem, when this is a production setup."""
        if self.is_production:
            problems = self.production_problems()
            if problems:
                raise ConfigurationError("refusing to run in production: " + "; ".join(problems))


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning a validation error into one clear message per bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            if err["loc"]:
                name = "COACHPAY_" + "_".join(str(p) for p in err["loc"]).upper()
                lines.append(f"{name}: {err['msg']}")
            else:  # a rule across settings: its message names them
                lines.append(str(err["msg"]))
        raise ConfigurationError("invalid configuration: " + "; ".join(lines)) from None
