"""The outbox's domain errors (api/errors.py maps them by base class)."""

from __future__ import annotations

from core.errors import Conflict, InvalidInput, NotFound


class EndpointNotFound(NotFound):
    pass


class EventNotFound(NotFound):
    pass


class InvalidEventTypes(InvalidInput):
    pass


class ReplayTooLarge(InvalidInput):
    """A time range holding more events than one replay takes."""


class EventNotWanted(Conflict):
    """A replay of an event whose type the endpoint does not take."""
