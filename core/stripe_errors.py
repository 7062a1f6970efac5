"""Stripe failures as named domain errors.

The one distinction callers need: did Stripe *definitely* refuse the request
(nothing happened; retrying with the same parameters will fail again), or is
the outcome *unknown* (timeout, dropped connection, 5xx or 429 after our
retries; the write may or may not have been applied, so the caller retries
later with the SAME idempotency key and Stripe replays the first result).
"""

from __future__ import annotations

import stripe

from core.errors import DomainError


class StripeRefused(DomainError):
    """Stripe answered and said no: card declined, invalid request, permission,
    destination account cannot receive transfers... Nothing was created."""

    def __init__(
        self,
        code: str | None,
        message: str,
        http_status: int | None,
        decline_code: str | None = None,
        *,
        param: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status
        self.decline_code = decline_code
        self.param = param
        self.request_id = request_id


class StripeBalanceInsufficient(StripeRefused):
    """The platform's available balance is too low for a transfer or refund
    (`balance_insufficient`): retry once funds become available, with a NEW
    idempotency key (Stripe stores and replays this refusal for the old one)."""


class StripeNotFound(StripeRefused):
    """`resource_missing` / 404: the object does not exist (on this account)."""


class StripeIdempotencyError(StripeRefused):
    """The idempotency key was reused with different parameters: a bug on our
    side (key not derived from the right row), never retried."""


class StripeAuthenticationError(StripeRefused):
    """401: the API key is wrong or revoked; a configuration problem."""


class StripeOutcomeUnknown(DomainError):
    """Stripe may or may not have applied the request. Retry later with the
    same idempotency key; never treat it as a refusal."""

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status


StripeError = StripeRefused | StripeOutcomeUnknown

# What a client may be told. Stripe's own message is for our logs: it can carry
# our idempotency keys ("Try using a key other than 'refund:12:0:500:0'"), object
# ids and the SDK's advice ("let us know at support@stripe.com"); its error
# code is stable and documented, so the answer names the code instead.
_PUBLIC_BY_CODE = {
    "card_declined": "the card was declined",
    "expired_card": "the card has expired",
    "incorrect_cvc": "the card's security code is incorrect",
    "processing_error": "the card could not be processed",
    "insufficient_funds": "the card has insufficient funds",
    "amount_too_small": "the amount is below Stripe's minimum charge",
    "amount_too_large": "the amount is above Stripe's maximum charge",
    "charge_already_refunded": "the charge has already been refunded",
    "charge_disputed": "the charge is disputed",
    "account_invalid": "the connected Stripe account cannot take this request",
}
_PUBLIC_BY_CLASS: tuple[tuple[type[DomainError], str], ...] = (
    (StripeOutcomeUnknown, "Stripe's answer is unknown; retry later"),
    (StripeIdempotencyError, "Stripe refused a repeated request that differs from the first"),
    (StripeAuthenticationError, "Stripe refused the platform's credentials"),
    (StripeBalanceInsufficient, "the platform's Stripe balance is too low for this now"),
    (StripeNotFound, "Stripe has no such object"),
)


def public_message(exc: StripeError) -> str:
    """A stable message for ``exc`` that reveals nothing internal (see above)."""
    for cls, text in _PUBLIC_BY_CLASS:
        if isinstance(exc, cls):
            return text
    assert isinstance(exc, StripeRefused)
    code = exc.code or ""
    if code in _PUBLIC_BY_CODE:
        return _PUBLIC_BY_CODE[code]
    if code.isidentifier():
        return f"Stripe refused the request ({code})"
    return "Stripe refused the request"


def is_retryable(exc: BaseException) -> bool:
    """Transient failures worth an immediate retry: connection errors (timeouts
    included, the SDK wraps every transport error), 429 and 5xx."""
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError):
        return True
    if isinstance(exc, stripe.StripeError):
        return exc.http_status is not None and exc.http_status >= 500
    return False


def classify(exc: BaseException) -> StripeError:
    """Map an SDK exception (or a transport error) to our domain error.

    Call it once retries are exhausted: a retryable error that is still
    failing has an unknown outcome."""
    if isinstance(exc, StripeRefused | StripeOutcomeUnknown):
        return exc
    if not isinstance(exc, stripe.StripeError):
        # A transport error the SDK did not wrap (e.g. raised by a test double).
        return StripeOutcomeUnknown(f"{type(exc).__name__}: {exc}")
    status = exc.http_status
    message = exc.user_message or str(exc) or type(exc).__name__
    if isinstance(exc, stripe.APIConnectionError):
        return StripeOutcomeUnknown(f"connection to Stripe failed: {message}")
    if isinstance(exc, stripe.RateLimitError) or status is None or status >= 500:
        return StripeOutcomeUnknown(f"Stripe HTTP {status}: {message}", http_status=status)
    if status == 409:
        # A concurrent request with the same key is still in flight: whatever
        # it does is the real outcome, so this is not a refusal.
        return StripeOutcomeUnknown(f"Stripe HTTP 409: {message}", http_status=status)
    if not 400 <= status < 500:
        # e.g. an unparseable 200 body: the write may well have happened.
        return StripeOutcomeUnknown(f"Stripe HTTP {status}: {message}", http_status=status)
    return _refusal(exc, status, message)


def _refusal(exc: stripe.StripeError, status: int, message: str) -> StripeRefused:
    err = exc.error
    # Only card and invalid-request errors carry `code` on the exception itself.
    code = exc.code or (getattr(err, "code", None) if err is not None else None)
    decline_code = getattr(err, "decline_code", None) if err is not None else None
    param = getattr(err, "param", None) if err is not None else None
    kwargs = {"param": param, "request_id": exc.request_id}
    cls: type[StripeRefused] = StripeRefused
    if isinstance(exc, stripe.IdempotencyError):
        cls = StripeIdempotencyError
    elif isinstance(exc, stripe.AuthenticationError) or status == 401:
        cls = StripeAuthenticationError
    elif code == "balance_insufficient":
        cls = StripeBalanceInsufficient
    elif code == "resource_missing" or status == 404:
        cls = StripeNotFound
    return cls(code, message, status, decline_code, **kwargs)
