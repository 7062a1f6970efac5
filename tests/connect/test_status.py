"""The derived account status, rule by rule."""

from __future__ import annotations

from typing import Any

import pytest

from connect.status import derive_status

ENABLED: dict[str, Any] = {
    "charges_enabled": True,
    "payouts_enabled": True,
    "details_submitted": True,
    "transfers_capability": "active",
    "currently_due": [],
    "past_due": [],
    "disabled_reason": None,
}


def status(**over: Any) -> str:
    return derive_status(**{**ENABLED, **over})


def test_everything_enabled_and_nothing_due_is_active() -> None:
    assert status() == "active"


@pytest.mark.parametrize("reason", ["rejected.fraud", "rejected.other", "platform_paused"])
def test_rejection_is_disabled_even_if_flags_are_on(reason: str) -> None:
    assert status(disabled_reason=reason) == "disabled"
    assert status(details_submitted=False, disabled_reason=reason) == "disabled"


@pytest.mark.parametrize(
    "over",
    [
        {"transfers_capability": "pending"},
        {"transfers_capability": None},
        {"payouts_enabled": False},
        {"charges_enabled": False},
        {"currently_due": ["external_account"]},
    ],
)
def test_not_active_when_any_condition_fails(over: dict[str, Any]) -> None:
    assert status(**over) != "active"


def test_fresh_account_reads_onboarding_despite_stripe_marking_it_past_due() -> None:
    assert (
        status(
            charges_enabled=False,
            payouts_enabled=False,
            details_submitted=False,
            transfers_capability="pending",
            currently_due=["external_account"],
            past_due=["external_account"],
            disabled_reason="requirements.past_due",
        )
        == "onboarding"
    )


def test_past_due_after_submission_is_restricted() -> None:
    assert status(past_due=["individual.id_number"], currently_due=["x"]) == "restricted"
    assert (
        status(charges_enabled=False, payouts_enabled=False, past_due=["individual.id_number"])
        == "restricted"
    )


def test_non_rejection_disabled_reason_is_restricted() -> None:
    assert status(payouts_enabled=False, disabled_reason="under_review") == "restricted"


def test_submitted_nothing_due_not_enabled_is_pending_verification() -> None:
    assert (
        status(charges_enabled=False, payouts_enabled=False, transfers_capability="pending")
        == "pending_verification"
    )


def test_submitted_but_more_currently_due_is_onboarding() -> None:
    assert (
        status(charges_enabled=False, payouts_enabled=False, currently_due=["external_account"])
        == "onboarding"
    )
