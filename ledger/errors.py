"""Ledger errors."""

from __future__ import annotations

from core.errors import Conflict, DomainError, InvalidInput, NotFound


class UnbalancedTransaction(InvalidInput):
    pass


class EmptyTransaction(InvalidInput):
    pass


class AccountNotFound(NotFound):
    pass


class CurrencyMismatch(InvalidInput):
    pass


class IdempotencyConflict(Conflict):
    """The same idempotency key was posted before with other legs."""


class LedgerImmutable(DomainError):
    pass
