"""No development secret in production: Settings.production_problems is the one rule."""

from __future__ import annotations

import pytest

from core.errors import ConfigurationError
from core.settings import Settings, load_settings

GOOD = {
    "jwt_secret": "j" * 32,
    "stripe_webhook_secret": "whsec_live_platform_0123456789",
    "stripe_connect_webhook_secret": "whsec_live_connect_0123456789",
    "stripe_secret_key": "sk_live_0123456789",
    "database_url": "postgresql://db.internal/coachpay",
    "public_url": "https://pay.example.com",
}


def _settings(**kw: object) -> Settings:
    return load_settings(**kw)


@pytest.mark.parametrize(
    "trigger",
    [
        {"stripe_secret_key": "sk_live_abc"},
        {"stripe_secret_key": "rk_live_abc"},
        {"public_url": "https://pay.example.com"},
        {"public_url": "HTTPS://pay.example.com"},
        {"env": "production"},
    ],
)
def test_production_is_recognised_and_the_defaults_refused(trigger: dict[str, str]) -> None:
    s = _settings(**trigger)
    assert s.is_production
    problems = s.production_problems()
    text = "\n".join(problems)
    for name in (
        "COACHPAY_JWT_SECRET",
        "COACHPAY_STRIPE_WEBHOOK_SECRET",
        "COACHPAY_STRIPE_CONNECT_WEBHOOK_SECRET",
    ):
        assert name in text, (trigger, problems)
    with pytest.raises(ConfigurationError) as exc:
        s.check_production()
    assert "COACHPAY_JWT_SECRET" in exc.value.detail


def test_development_needs_nothing() -> None:
    s = _settings()
    assert not s.is_production
    s.check_production()  # the demo and the tests run on the built-in values
    _settings(stripe_secret_key="sk_test_x", public_url="http://localhost:8000").check_production()


def test_a_complete_production_configuration_passes() -> None:
    s = _settings(**GOOD)
    assert s.is_production and s.production_problems() == []
    s.check_production()


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"jwt_secret": "j" * 31}, "COACHPAY_JWT_SECRET"),
        ({"jwt_secret": "é" * 15}, "COACHPAY_JWT_SECRET"),  # 30 bytes, 15 characters
        ({"jwt_secret": "coachpay-dev-secret-change-me-0123456789"}, "COACHPAY_JWT_SECRET"),
        ({"stripe_webhook_secret": ""}, "COACHPAY_STRIPE_WEBHOOK_SECRET"),
        ({"stripe_webhook_secret": "  "}, "COACHPAY_STRIPE_WEBHOOK_SECRET"),
        (
            {"stripe_webhook_secret": "whsec_coachpay_platform_dev"},
            "COACHPAY_STRIPE_WEBHOOK_SECRET",
        ),
        ({"stripe_connect_webhook_secret": ""}, "COACHPAY_STRIPE_CONNECT_WEBHOOK_SECRET"),
        (
            {"stripe_connect_webhook_secret": "whsec_coachpay_connect_dev"},
            "COACHPAY_STRIPE_CONNECT_WEBHOOK_SECRET",
        ),
        ({"database_url": None}, "COACHPAY_DATABASE_URL"),
        ({"public_url": "http://pay.example.com"}, "COACHPAY_PUBLIC_URL"),
    ],
)
def test_each_problem_names_its_variable(change: dict[str, object], variable: str) -> None:
    s = _settings(**{**GOOD, **change})
    problems = s.production_problems()
    assert len(problems) == 1 and problems[0].startswith(variable + ":"), problems
    with pytest.raises(ConfigurationError, match=variable):
        s.check_production()


def test_env_production_without_a_stripe_key_would_run_the_emulator() -> None:
    s = _settings(**{**GOOD, "stripe_secret_key": None, "env": "production"})
    assert s.production_problems() == [
        "COACHPAY_STRIPE_SECRET_KEY: not set (the Stripe emulator would run)"
    ]


def test_the_app_refuses_to_start_with_a_development_secret() -> None:
    from api.app import create_app

    with pytest.raises(ConfigurationError, match="COACHPAY_JWT_SECRET"):
        create_app(_settings(**{**GOOD, "jwt_secret": "short"}))
