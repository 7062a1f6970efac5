"""Runtime configuration, changeable through `POST /_emulator/config`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from emulator.errors import ControlError


@dataclass
class Config:
    platform_webhook_url: str | None = None
    connect_webhook_url: str | None = None
    platform_secret: str = "whsec_coachpay_platform_dev"
    connect_secret: str = "whsec_coachpay_connect_dev"
    platform_enabled_events: list[str] = field(default_factory=lambda: ["*"])
    connect_enabled_events: list[str] = field(default_factory=lambda: ["*"])
    funds_delay_seconds: int = 0
    webhook_max_attempts: int = 5
    webhook_retry_base_seconds: float = 0.2
    webhook_retry_max_seconds: float = 5.0
    webhook_timeout_seconds: float = 10.0
    webhook_concurrency: int = 4
    dispute_fee: int = 1500
    fee_bps: int = 290
    fee_fixed: int = 30
    idempotency_store_errors: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def update(self, values: dict[str, Any]) -> None:
        known = {f.name: f for f in fields(self)}
        for name, value in values.items():
            if name not in known:
                raise ControlError(f"unknown config key: {name}")
            current = getattr(self, name)
            if value is not None and current is not None and not _same_kind(current, value):
                raise ControlError(f"config {name}: expected {type(current).__name__}")
            setattr(self, name, value)


def _same_kind(current: object, value: object) -> bool:
    if isinstance(current, bool) or isinstance(value, bool):
        return isinstance(current, bool) and isinstance(value, bool)
    if isinstance(current, float):
        return isinstance(value, int | float)
    return isinstance(value, type(current))
