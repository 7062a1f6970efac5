"""Errors of the sessions package (all map to HTTP statuses through core.errors)."""

from __future__ import annotations

from core.errors import Conflict, Forbidden, InvalidInput, NotFound


class SessionNotFound(NotFound):
    pass


class BookingNotFound(NotFound):
    pass


class CoachCannotTakeCharges(Conflict):
    """The coach has no Connect account that can take charges yet."""


class SessionFull(Conflict):
    pass


class SessionNotBookable(Conflict):
    """Cancelled, or already started."""


class AlreadyBooked(Conflict):
    pass


class BookingStateConflict(Conflict):
    pass


class RefundTooLarge(Conflict):
    pass


class RefundWindowClosed(Forbidden):
    pass


class NotYourBooking(Forbidden):
    pass


class InvalidSessionInput(InvalidInput):
    pass


class SessionNotCancellable(Conflict):
    """Started already (its coach can no longer cancel it; an admin can)."""
