"""Payout errors (domain: no HTTP here; the API maps the base classes)."""

from __future__ import annotations

from core.errors import Conflict, InvalidInput, NotFound


class PayoutNotFound(NotFound):
    pass


class CoachNotFound(NotFound):
    pass


class PayoutNotRetryable(Conflict):
    """Only a failed payout may be retried, and only once."""


class PayoutsPaused(Conflict):
    pass


class PayoutsNotEnabled(Conflict):
    """The coach's Connect account cannot receive payouts (yet)."""


class NothingToPay(Conflict):
    pass


class InvalidReason(InvalidInput):
    pass


class SimulatedCrash(BaseException):
    """Raised at a named step by the ``crash_at`` test seam.

    A BaseException so that no ``except Exception`` on the way swallows it:
    it must kill the cycle like a crashed process would (the open database
    transaction is rolled back, nothing after the step happens).
    """
