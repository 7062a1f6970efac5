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


class IllegalTransition(Conflict):
    """A status change that the state machine's table of allowed transitions does not have."""

    def __init__(self, machine: str, from_status: str | None, to_status: str) -> None:
        super().__init__(f"{machine}: {from_status} -> {to_status} is not an allowed transition")
        self.machine = machine
        self.from_status = from_status
        self.to_status = to_status
