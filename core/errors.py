"""Domain errors: named after the condition, unaware of HTTP."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.__class__.__name__)
        self.detail = detail or self.__class__.__name__


class ConfigurationError(DomainError):
    pass


class NotFound(DomainError):
    pass


class Forbidden(DomainError):
    pass


class InvalidInput(DomainError):
    def __init__(self, detail: str = "", *, field: str | None = None) -> None:
        super().__init__(detail)
        self.field = field


class Conflict(DomainError):
    """A request that the current state does not allow."""


class UnknownCurrency(InvalidInput):
    pass


class InvalidAmount(InvalidInput):
    pass


class InsufficientBalance(Conflict):
    pass
