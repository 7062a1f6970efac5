"""The payout and earning tables, and the Python paths that check them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import IllegalTransition
from ledger.models import EARNING_ALLOWED, EarningStatus, check_earning_transition
from payouts.models import PAYOUT_ALLOWED, PayoutStatus, check_payout_transition


def test_every_status_has_a_row() -> None:
    assert set(PAYOUT_ALLOWED) == set(PayoutStatus)
    assert set(EARNING_ALLOWED) == set(EarningStatus)


@given(st.sampled_from(list(PayoutStatus)), st.sampled_from(list(PayoutStatus)))
def test_check_payout_transition_is_the_table(a: PayoutStatus, b: PayoutStatus) -> None:
    if b in PAYOUT_ALLOWED[a]:
        check_payout_transition(a, b)
    else:
        with pytest.raises(IllegalTransition):
            check_payout_transition(a, b)


@given(st.sampled_from(list(EarningStatus)), st.sampled_from(list(EarningStatus)))
def test_check_earning_transition_is_the_table(a: EarningStatus, b: EarningStatus) -> None:
    if b in EARNING_ALLOWED[a]:
        check_earning_transition(str(a), str(b))  # plain strings from a row work too
    else:
        with pytest.raises(IllegalTransition):
            check_earning_transition(str(a), str(b))


def test_a_settled_or_failed_payout_never_moves() -> None:
    assert PAYOUT_ALLOWED[PayoutStatus.PAID] == frozenset()
    assert PAYOUT_ALLOWED[PayoutStatus.FAILED] == frozenset()
