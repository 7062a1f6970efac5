"""The configuration reference, generated from ``core.settings.Settings``.

``uv run python -m scripts.config_reference`` prints a Markdown table: every
setting's variable, default and accepted values come from the class itself; what
it means comes from the field's ``description`` or, failing that, from MEANING
below (tests/test_config_reference.py fails for a setting with neither).
"""

from __future__ import annotations

import sys
import typing
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo

from core.settings import Settings

MEANING: dict[str, str] = {
    "database_url": "`postgresql://...` (psycopg 3); unset: an embedded PostgreSQL in "
    "`COACHPAY_DATA_DIR` (the `embedded` extra)",
    "data_dir": "folder of the embedded PostgreSQL (`pg/`)",
    "db_pool_size": "connections per process (and as many again in overflow)",
    "stripe_secret_key": "platform secret key `sk_live_...` / `sk_test_...`; unset: the "
    "Stripe emulator",
    "stripe_api_base": "point the Stripe SDK elsewhere (the emulator); empty: Stripe's",
    "stripe_webhook_secret": "signing secret of the platform webhook endpoint",
    "stripe_connect_webhook_secret": "signing secret of the Connect webhook endpoint",
    "stripe_max_retries": "retries of a Stripe call on connection errors, 429 and 5xx only",
    "stripe_timeout_seconds": "timeout of one Stripe request",
    "emulator_port": "where the built-in emulator listens",
    "jwt_secret": "HS256 secret of bearer tokens (set it in production)",
    "jwt_ttl_minutes": "lifetime of tokens minted by `coachpay token`",
    "public_url": "where people reach the app (Checkout and onboarding return URLs)",
    "host": "address `serve` binds (and the metrics port)",
    "port": "port `serve` binds",
    "platform_fee_bps": "default platform fee, in basis points",
    "hold_hours": "default hold before a coach's money is released (per coach override)",
    "default_currency": "currency the finance page charts first",
    "checkout_expiry_minutes": "Checkout Session lifetime (Stripe's minimum is 30)",
    "refund_window_hours": "default mentee refund window of new sessions",
    "run_jobs": "`serve` runs the scheduled jobs too",
    "release_interval_seconds": "how often the release job runs",
    "payout_interval_seconds": "how often the payout job runs",
    "webhook_retry_interval_seconds": "how often the webhook retry and cancelled-session jobs run",
    "webhook_processing": "`background`: process each event right after its 200, in the web "
    "process; `off`: only store it, `coachpay worker` processes it; `inline`: before the 200",
    "job_batch_size": "rows claimed per batch",
    "stripe_idempotency_window_hours": "after it, a transfer is looked up before one is created",
    "ledger_hot_slots": "balance slots of hot accounts",
    "log_level": "`DEBUG`, `INFO`, `WARNING`, `ERROR`",
    "env": "`production`: JSON logs by default, `/metrics` never open without a credential",
    "log_format": "`json` (one object a line) or `console`; unset: `json` in production",
    "metrics_token": "bearer token for `GET /metrics` (the admin role works too)",
    "metrics_port": "also serve `/metrics`, with no credential, on this port of "
    "`COACHPAY_HOST` (`serve`, `worker`)",
}


def meaning(name: str, field: FieldInfo) -> str:
    return field.description or MEANING.get(name, "")


def _default(field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "a development value"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


_KINDS: dict[type, str] = {
    bool: "`true` / `false`",
    int: "integer",
    float: "number",
    str: "text",
    Path: "path",
    SecretStr: "secret",
}
_BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))


def _literal(annotation: Any) -> list[str]:
    for arg in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(arg) is typing.Literal:
            return [str(a) for a in typing.get_args(arg)]
    return []


def _accepts(field: FieldInfo) -> str:
    choices = _literal(field.annotation)
    if choices:
        return " / ".join(f"`{c}`" for c in choices)
    kinds = [a for a in (field.annotation, *typing.get_args(field.annotation)) if a in _KINDS]
    kind = _KINDS[kinds[0]] if kinds else ""
    bounds = [
        f"{sign} {getattr(m, attr)}"
        for m in field.metadata
        for attr, sign in _BOUNDS
        if getattr(m, attr, None) is not None
    ]
    return ", ".join([kind, *bounds]) if kind else ", ".join(bounds)


def table() -> str:
    prefix = str(Settings.model_config.get("env_prefix", ""))
    lines = ["| variable | default | accepts | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        variable = f"`{prefix}{name.upper()}`"
        accepts = _accepts(field)
        lines.append(f"| {variable} | {_default(field)} | {accepts} | {meaning(name, field)} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    sys.stdout.write(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
