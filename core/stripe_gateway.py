"""The one place coachpay talks to Stripe.

A thin async layer over ``stripe.StripeClient`` (``client.v1.*``) that
returns our own dataclasses (core/stripe_types.py) and raises our own errors
(core/stripe_errors.py). Retries live in core/stripe_retry.py; the SDK's own
retries are disabled so attempts are counted in exactly one place.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import stripe

from core.metrics import observe_stripe_call
from core.stripe_retry import RetryPolicy
from core.stripe_types import (
    AccountLink,
    Balance,
    BalanceTransaction,
    Charge,
    CheckoutSession,
    Customer,
    Dispute,
    LoginLink,
    Page,
    PaymentIntent,
    Refund,
    StripeAccount,
    StripeEvent,
    StripePayout,
    Transfer,
    TransferReversal,
)

if TYPE_CHECKING:
    from stripe import RequestOptions
    from stripe.params import (
        ChargeRetrieveParams,
        DisputeRetrieveParams,
        PaymentIntentRetrieveParams,
        RefundRetrieveParams,
    )

    from core.settings import Settings

T = TypeVar("T")

EMULATOR_API_KEY = "sk_test_emulator"
_MAX_KEY_LENGTH = 255  # Stripe rejects longer idempotency keys


def idempotency_key(kind: str, row_id: object, *parts: object) -> str:
    """``coachpay:<kind>:<row id>[:<part>...]``: one key per intended effect.

    Derive it from the row that records the intent (a payout id, a refund id)
    so that a retry after a crash sends the same key and Stripe deduplicates.
    """
    key = ":".join(str(p) for p in ("coachpay", kind, row_id, *parts))
    if len(key) > _MAX_KEY_LENGTH:
        raise ValueError(f"idempotency key longer than {_MAX_KEY_LENGTH} characters")
    return key


def _params(**fields: Any) -> Any:
    """Form params without the ``None`` entries (Stripe's TypedDicts forbid
    None for optional fields, and an omitted field keeps Stripe's default)."""
    return {k: v for k, v in fields.items() if v is not None}


def _one_off_key(kind: str) -> str:
    # For writes with no row behind them (links). The SDK would otherwise
    # invent a fresh key per HTTP attempt, so our retries could not dedupe.
    return f"coachpay:{kind}:{uuid.uuid4()}"


def _write(key: str) -> Any:
    if not key or len(key) > _MAX_KEY_LENGTH:
        raise ValueError("every Stripe write needs an idempotency key of 1-255 characters")
    return {"idempotency_key": key}


def _page(raw: dict[str, Any], parse: Callable[[dict[str, Any]], T]) -> Page[T]:
    return Page(
        data=tuple(parse(d) for d in raw.get("data") or []), has_more=bool(raw.get("has_more"))
    )


async def _first_match(
    list_page: Callable[[str | None], Awaitable[Page[T]]], match: Callable[[T], bool]
) -> T | None:
    """The first object of a paged Stripe list that matches, reading pages until found."""
    cursor: str | None = None
    while True:
        page = await list_page(cursor)
        for item in page.data:
            if match(item):
                return item
        if not page.has_more or page.last_id is None:
            return None
        cursor = page.last_id


class StripeGateway:
    def __init__(
        self,
        api_key: str,
        *,
        api_base: str | None = None,
        max_retries: int = 3,
        timeout: float = 20.0,
        backoff_base: float = 0.5,
    ) -> None:
        # A float timeout applies to connect, read, write and pool alike; the
        # SDK wraps httpx.TimeoutException in APIConnectionError, which we
        # retry and finally report as StripeOutcomeUnknown.
        self._http = stripe.HTTPXClient(timeout=httpx.Timeout(timeout), allow_sync_methods=True)
        bases: Any = {"api": api_base, "connect": api_base, "files": api_base} if api_base else None
        self._client = stripe.StripeClient(
            api_key,
            http_client=self._http,
            base_addresses=bases,
            max_network_retries=0,
        )
        self._retry = RetryPolicy(max_retries=max_retries, backoff_base=backoff_base)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> StripeGateway:
        secret = settings.stripe_secret_key
        api_base = settings.stripe_api_base
        if secret is None and api_base is None:
            # No key means "use the emulator"; default to where it listens.
            api_base = f"http://127.0.0.1:{settings.emulator_port}"
        kwargs: dict[str, Any] = {
            "api_base": api_base,
            "max_retries": settings.stripe_max_retries,
            "timeout": settings.stripe_timeout_seconds,
            **overrides,
        }
        return cls(secret.get_secret_value() if secret else EMULATOR_API_KEY, **kwargs)

    async def aclose(self) -> None:
        self._http.close()
        await self._http.close_async()

    async def __aenter__(self) -> StripeGateway:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _call(self, fn: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
        with observe_stripe_call(fn) as attempt:
            obj = await self._retry.call(attempt)
        return obj.to_dict()

    @property
    def _v1(self) -> stripe.V1Services:
        return self._client.v1

    # -- Connect accounts ---------------------------------------------------

    async def create_account(
        self,
        *,
        email: str | None,
        country: str,
        default_currency: str | None = None,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> StripeAccount:
        # Express-like controller: Stripe collects KYC and hosts the dashboard,
        # the platform pays Stripe's fees and bears negative balances.
        params = _params(
            email=email,
            country=country,
            default_currency=default_currency,
            metadata=metadata,
            controller={
                "stripe_dashboard": {"type": "express"},
                "fees": {"payer": "application"},
                "losses": {"payments": "application"},
            },
            capabilities={"transfers": {"requested": True}},
        )
        raw = await self._call(
            lambda: self._v1.accounts.create_async(params, _write(idempotency_key))
        )
        return StripeAccount.from_dict(raw)

    async def retrieve_account(self, account_id: str) -> StripeAccount:
        raw = await self._call(lambda: self._v1.accounts.retrieve_async(account_id))
        return StripeAccount.from_dict(raw)

    async def list_accounts(
        self, *, limit: int = 100, starting_after: str | None = None
    ) -> Page[StripeAccount]:
        params = _params(limit=limit, starting_after=starting_after)
        raw = await self._call(lambda: self._v1.accounts.list_async(params))
        return _page(raw, StripeAccount.from_dict)

    async def find_account_by_metadata(self, *, key: str, value: str) -> StripeAccount | None:
        """The connected account we created earlier with this metadata, if any.

        Stripe has no account search, and forgets idempotency keys after 24 h:
        an account whose creation we never recorded is found by listing (every
        account, newest first; only on that rare recovery path)."""
        return await _first_match(
            lambda cursor: self.list_accounts(starting_after=cursor),
            lambda account: account.metadata.get(key) == value,
        )

    async def update_account(
        self, account_id: str, *, metadata: dict[str, str], idempotency_key: str
    ) -> StripeAccount:
        params = _params(metadata=metadata)
        raw = await self._call(
            lambda: self._v1.accounts.update_async(account_id, params, _write(idempotency_key))
        )
        return StripeAccount.from_dict(raw)

    async def create_account_link(
        self,
        *,
        account_id: str,
        refresh_url: str,
        return_url: str,
        idempotency_key: str | None = None,
    ) -> AccountLink:
        # Links are single-use and short-lived; a fresh one per request is
        # normal, so the key is optional (one is made up for the retries).
        params = _params(
            account=account_id,
            refresh_url=refresh_url,
            return_url=return_url,
            type="account_onboarding",
        )
        options = _write(idempotency_key or _one_off_key("account-link"))
        raw = await self._call(lambda: self._v1.account_links.create_async(params, options))
        return AccountLink.from_dict(raw)

    async def create_login_link(
        self, account_id: str, *, idempotency_key: str | None = None
    ) -> LoginLink:
        options = _write(idempotency_key or _one_off_key("login-link"))
        raw = await self._call(
            lambda: self._v1.accounts.login_links.create_async(account_id, None, options)
        )
        return LoginLink.from_dict(raw)

    # -- Checkout -----------------------------------------------------------

    async def create_checkout_session(
        self,
        *,
        amount: int,
        currency: str,
        product_name: str,
        success_url: str,
        cancel_url: str,
        expires_at: int,
        metadata: dict[str, str],
        transfer_group: str,
        customer_email: str | None = None,
        client_reference_id: str | None = None,
        customer: str | None = None,
        idempotency_key: str,
    ) -> CheckoutSession:
        # Separate charges and transfers: the charge lands on the platform,
        # tagged with the transfer group; payouts move the coach's share later.
        params = _params(
            mode="payment",
            line_items=[
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": currency,
                        "unit_amount": amount,
                        "product_data": {"name": product_name},
                    },
                }
            ],
            payment_intent_data={"transfer_group": transfer_group, "metadata": metadata},
            metadata=metadata,
            success_url=success_url,
            cancel_url=cancel_url,
            expires_at=expires_at,
            customer_email=customer_email,
            client_reference_id=client_reference_id,
            customer=customer,
        )
        raw = await self._call(
            lambda: self._v1.checkout.sessions.create_async(params, _write(idempotency_key))
        )
        return CheckoutSession.from_dict(raw)

    async def retrieve_checkout_session(self, session_id: str) -> CheckoutSession:
        raw = await self._call(lambda: self._v1.checkout.sessions.retrieve_async(session_id))
        return CheckoutSession.from_dict(raw)

    async def expire_checkout_session(
        self, session_id: str, *, idempotency_key: str
    ) -> CheckoutSession:
        raw = await self._call(
            lambda: self._v1.checkout.sessions.expire_async(
                session_id, None, _write(idempotency_key)
            )
        )
        return CheckoutSession.from_dict(raw)

    # -- Payments -----------------------------------------------------------

    async def retrieve_payment_intent(self, payment_intent_id: str) -> PaymentIntent:
        # Expanded so the caller gets the charge id and Stripe's fee in one call.
        params: PaymentIntentRetrieveParams = {"expand": ["latest_charge.balance_transaction"]}
        raw = await self._call(
            lambda: self._v1.payment_intents.retrieve_async(payment_intent_id, params)
        )
        return PaymentIntent.from_dict(raw)

    async def retrieve_charge(self, charge_id: str) -> Charge:
        params: ChargeRetrieveParams = {"expand": ["balance_transaction"]}
        raw = await self._call(lambda: self._v1.charges.retrieve_async(charge_id, params))
        return Charge.from_dict(raw)

    async def create_refund(
        self,
        *,
        payment_intent: str | None = None,
        charge: str | None = None,
        amount: int | None,
        metadata: dict[str, str],
        reason: str | None = None,
        idempotency_key: str,
    ) -> Refund:
        if (payment_intent is None) == (charge is None):
            raise ValueError("refund exactly one of payment_intent or charge")
        params = _params(
            payment_intent=payment_intent,
            charge=charge,
            amount=amount,
            metadata=metadata,
            reason=reason,
        )
        raw = await self._call(
            lambda: self._v1.refunds.create_async(params, _write(idempotency_key))
        )
        return Refund.from_dict(raw)

    async def list_refunds(
        self,
        *,
        charge: str | None = None,
        payment_intent: str | None = None,
        limit: int = 100,
        starting_after: str | None = None,
    ) -> Page[Refund]:
        """The refunds of one charge (or PaymentIntent), newest first.

        ``charge.refunded`` no longer embeds them (API 2022-11-15), so a refund
        made in Stripe's dashboard is found here."""
        if (charge is None) == (payment_intent is None):
            raise ValueError("list the refunds of exactly one charge or payment_intent")
        params = _params(
            charge=charge, payment_intent=payment_intent, limit=limit, starting_after=starting_after
        )
        raw = await self._call(lambda: self._v1.refunds.list_async(params))
        return _page(raw, Refund.from_dict)

    # -- Transfers ----------------------------------------------------------

    async def create_transfer(
        self,
        *,
        amount: int,
        currency: str,
        destination: str,
        transfer_group: str | None = None,
        metadata: dict[str, str],
        source_transaction: str | None = None,
        description: str | None = None,
        idempotency_key: str,
    ) -> Transfer:
        params = _params(
            amount=amount,
            currency=currency,
            destination=destination,
            transfer_group=transfer_group,
            metadata=metadata,
            source_transaction=source_transaction,
            description=description,
        )
        raw = await self._call(
            lambda: self._v1.transfers.create_async(params, _write(idempotency_key))
        )
        return Transfer.from_dict(raw)

    async def retrieve_transfer(self, transfer_id: str) -> Transfer:
        raw = await self._call(lambda: self._v1.transfers.retrieve_async(transfer_id))
        return Transfer.from_dict(raw)

    async def list_transfers(
        self,
        *,
        transfer_group: str | None = None,
        destination: str | None = None,
        limit: int = 100,
        starting_after: str | None = None,
    ) -> Page[Transfer]:
        params = _params(
            transfer_group=transfer_group,
            destination=destination,
            limit=limit,
            starting_after=starting_after,
        )
        raw = await self._call(lambda: self._v1.transfers.list_async(params))
        return _page(raw, Transfer.from_dict)

    async def find_transfer_by_metadata(
        self, *, destination: str, transfer_group: str | None, key: str, value: str
    ) -> Transfer | None:
        """The transfer we made earlier for this intent, if any.

        Stripe forgets idempotency keys after 24 h, so a payout still unsettled
        after that is looked up by the metadata we stamped on it before a new
        transfer is attempted."""
        return await _first_match(
            lambda cursor: self.list_transfers(
                transfer_group=transfer_group, destination=destination, starting_after=cursor
            ),
            lambda transfer: transfer.metadata.get(key) == value,
        )

    async def create_transfer_reversal(
        self,
        transfer_id: str,
        *,
        amount: int | None = None,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> TransferReversal:
        params = _params(amount=amount, metadata=metadata)
        raw = await self._call(
            lambda: self._v1.transfers.reversals.create_async(
                transfer_id, params, _write(idempotency_key)
            )
        )
        return TransferReversal.from_dict(raw)

    # -- Re-reads for webhooks ----------------------------------------------
    # A signed event proves it came through our endpoint secret, not that the
    # money moved: handlers book the object as Stripe returns it from these.

    async def retrieve_refund(self, refund_id: str) -> Refund:
        """The refund with its charge expanded (one call: its amount is capped by the charge)."""
        params: RefundRetrieveParams = {"expand": ["charge"]}
        raw = await self._call(lambda: self._v1.refunds.retrieve_async(refund_id, params))
        return Refund.from_dict(raw)

    async def retrieve_dispute(self, dispute_id: str) -> Dispute:
        """The dispute with its charge expanded."""
        params: DisputeRetrieveParams = {"expand": ["charge"]}
        raw = await self._call(lambda: self._v1.disputes.retrieve_async(dispute_id, params))
        return Dispute.from_dict(raw)

    async def list_transfer_reversals(
        self, transfer_id: str, *, limit: int = 100, starting_after: str | None = None
    ) -> Page[TransferReversal]:
        """A transfer's reversals, newest first (the transfer embeds only the 10 newest)."""
        params = _params(limit=limit, starting_after=starting_after)
        raw = await self._call(lambda: self._v1.transfers.reversals.list_async(transfer_id, params))
        return _page(raw, TransferReversal.from_dict)

    async def all_transfer_reversals(self, transfer: Transfer) -> tuple[TransferReversal, ...]:
        """Every reversal of a retrieved transfer, newest first: the embedded list,
        or, when Stripe says there are more, every page of the list endpoint."""
        if transfer.reversals is not None and not transfer.reversals.has_more:
            return transfer.reversals.data
        found: list[TransferReversal] = []
        cursor: str | None = None
        while True:
            page = await self.list_transfer_reversals(transfer.id, starting_after=cursor)
            found.extend(page.data)
            if not page.has_more or page.last_id is None:
                return tuple(found)
            cursor = page.last_id

    async def retrieve_payout(self, payout_id: str, *, account: str) -> StripePayout:
        """A payout of a connected account to its bank (``Stripe-Account: account``):
        Stripe answers 404 for a payout of any other account."""
        options: RequestOptions = {"stripe_account": account}
        raw = await self._call(lambda: self._v1.payouts.retrieve_async(payout_id, None, options))
        return StripePayout.from_dict(raw)

    # -- Balance and reconciliation ----------------------------------------

    async def retrieve_balance(self) -> Balance:
        raw = await self._call(lambda: self._v1.balance.retrieve_async())
        return Balance.from_dict(raw)

    async def list_balance_transactions(
        self,
        *,
        created_gte: int | None = None,
        created_lt: int | None = None,
        type: str | None = None,
        limit: int = 100,
        starting_after: str | None = None,
    ) -> Page[BalanceTransaction]:
        created = _params(gte=created_gte, lt=created_lt) or None
        params = _params(created=created, type=type, limit=limit, starting_after=starting_after)
        raw = await self._call(lambda: self._v1.balance_transactions.list_async(params))
        return _page(raw, BalanceTransaction.from_dict)

    async def iter_balance_transactions(
        self,
        *,
        created_gte: int | None = None,
        created_lt: int | None = None,
        type: str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[BalanceTransaction]:
        """Every matching balance transaction, newest first, page by page."""
        cursor: str | None = None
        while True:
            page = await self.list_balance_transactions(
                created_gte=created_gte,
                created_lt=created_lt,
                type=type,
                limit=page_size,
                starting_after=cursor,
            )
            for txn in page.data:
                yield txn
            if not page.has_more or page.last_id is None:
                return
            cursor = page.last_id

    # -- Events -------------------------------------------------------------

    async def retrieve_event(self, event_id: str, *, account: str | None = None) -> StripeEvent:
        """``account``: the connected account an event belongs to (Connect events)."""
        options: RequestOptions | None = {"stripe_account": account} if account else None
        raw = await self._call(lambda: self._v1.events.retrieve_async(event_id, None, options))
        return StripeEvent.from_dict(raw)

    # -- Customers ----------------------------------------------------------

    async def create_customer(
        self,
        *,
        email: str | None,
        metadata: dict[str, str],
        name: str | None = None,
        idempotency_key: str,
    ) -> Customer:
        params = _params(email=email, name=name, metadata=metadata)
        raw = await self._call(
            lambda: self._v1.customers.create_async(params, _write(idempotency_key))
        )
        return Customer.from_dict(raw)

    async def retrieve_customer(self, customer_id: str) -> Customer:
        """A deleted customer comes back with ``deleted=True`` (Stripe answers 200)."""
        raw = await self._call(lambda: self._v1.customers.retrieve_async(customer_id))
        return Customer.from_dict(raw)
