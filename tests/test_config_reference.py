"""The configuration reference is generated from Settings and leaves no setting out."""

from __future__ import annotations

from core.settings import Settings
from scripts.config_reference import meaning, table


def test_every_setting_is_documented() -> None:
    undocumented = [n for n, f in Settings.model_fields.items() if not meaning(n, f)]
    assert undocumented == []


def test_the_table_lists_every_variable_and_no_secret_default() -> None:
    out = table()
    for name in Settings.model_fields:
        assert f"`COACHPAY_{name.upper()}`" in out
    assert "coachpay-dev-secret" not in out and "whsec_" not in out
    assert "| `COACHPAY_DB_POOL_SIZE` | `10` | integer, >= 1, <= 200 |" in out
    assert "`development` / `production`" in out


def test_the_readme_shows_the_generated_table() -> None:
    from tests.dbutil import ROOT

    readme = (ROOT / "README.md").read_text()
    start, end = "<!-- config-reference:start -->\n", "<!-- config-reference:end -->"
    shown = readme[readme.index(start) + len(start) : readme.index(end)]
    assert shown.strip() == table().strip(), "run: uv run python -m scripts.config_reference"


def test_failure_handling_settings_keep_their_defaults_and_check_their_rules() -> None:
    import pytest

    from core.errors import ConfigurationError
    from core.settings import load_settings

    s = load_settings()
    assert (
        s.webhook_max_handler_failures, s.webhook_transient_park_days,
        s.webhook_handler_timeout_seconds, s.payout_refusal_backoff_base_minutes,
        s.payout_refusal_backoff_cap_hours, s.payout_pause_after_refusals,
        s.refund_replay_window_minutes, s.refund_intent_stale_minutes, s.webhook_allowed_networks,
    ) == (8, 7, 240, 60, 24, 3, 60, 5, "")  # fmt: skip
    with pytest.raises(ConfigurationError, match="COACHPAY_REFUND_INTENT_STALE_MINUTES"):
        load_settings(refund_intent_stale_minutes=2)  # 20 s x 4 tries + 60 s backoff > 120 s
    assert load_settings(stripe_timeout_seconds=5, refund_intent_stale_minutes=2)
    with pytest.raises(ConfigurationError, match="COACHPAY_WEBHOOK_ALLOWED_NETWORKS"):
        load_settings(webhook_allowed_networks="10.0.0.0/8, 10.0.0.1/33")
    with pytest.raises(ConfigurationError, match="COACHPAY_WEBHOOK_HANDLER_TIMEOUT_SECONDS"):
        load_settings(webhook_handler_timeout_seconds=300)  # not below the 5 min claim lease
