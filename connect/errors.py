"""Errors of the connect package (coach profiles and Connect accounts)."""

from __future__ import annotations

from core.errors import Conflict, Forbidden, InvalidInput, NotFound


class CoachNotFound(NotFound):
    """No coach (user with role coach) or no profile under this id."""


class ConnectAccountNotFound(NotFound):
    """The coach has not started onboarding yet, or the Stripe account is unknown."""


class NotACoach(Forbidden):
    """Only coaches onboard to Stripe Connect."""


class AccountDisabled(Conflict):
    """Stripe rejected or disabled the account: a new onboarding link cannot help."""


class InvalidProfileChange(InvalidInput):
    """An admin change to a coach profile that fails validation (nothing is written)."""


class InvalidLinkToken(Forbidden):
    """The signed token in an onboarding refresh/return URL is missing, forged or expired."""
