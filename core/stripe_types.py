"""Our own view of the Stripe objects coachpay uses.

Every type parses from the plain JSON dict Stripe sends (``from_dict``), so
the same parser serves API responses and webhook ``data.object`` payloads.
Amounts are integers in the currency's minor unit, times are Unix seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
Json = Mapping[str, Any]


def _id_of(value: object) -> str | None:
    """An expandable field is either an id or the expanded object."""
    if isinstance(value, Mapping):
        return str(value["id"])
    return str(value) if value is not None else None


def _metadata(d: Json) -> dict[str, str]:
    return {str(k): str(v) for k, v in (d.get("metadata") or {}).items()}


def _strs(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list | tuple) else ()


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    data: tuple[T, ...]
    has_more: bool

    @property
    def last_id(self) -> str | None:
        """The cursor for ``starting_after`` on the next page."""
        return getattr(self.data[-1], "id", None) if self.data else None


@dataclass(frozen=True, slots=True)
class StripeAccount:
    id: str
    email: str | None
    country: str | None
    default_currency: str | None
    charges_enabled: bool
    payouts_enabled: bool
    details_submitted: bool
    requirements_currently_due: tuple[str, ...]
    requirements_past_due: tuple[str, ...]
    requirements_eventually_due: tuple[str, ...]
    disabled_reason: str | None
    transfers_capability: str | None  # active / inactive / pending
    metadata: dict[str, str]
    created: int | None

    @classmethod
    def from_dict(cls, d: Json) -> StripeAccount:
        req = d.get("requirements") or {}
        caps = d.get("capabilities") or {}
        return cls(
            id=d["id"],
            email=d.get("email"),
            country=d.get("country"),
            default_currency=d.get("default_currency"),
            charges_enabled=bool(d.get("charges_enabled")),
            payouts_enabled=bool(d.get("payouts_enabled")),
            details_submitted=bool(d.get("details_submitted")),
            requirements_currently_due=_strs(req.get("currently_due")),
            requirements_past_due=_strs(req.get("past_due")),
            requirements_eventually_due=_strs(req.get("eventually_due")),
            disabled_reason=req.get("disabled_reason"),
            transfers_capability=caps.get("transfers"),
            metadata=_metadata(d),
            created=d.get("created"),
        )

    @property
    def can_receive_transfers(self) -> bool:
        return self.transfers_capability == "active"


@dataclass(frozen=True, slots=True)
class AccountLink:
    url: str
    expires_at: int

    @classmethod
    def from_dict(cls, d: Json) -> AccountLink:
        return cls(url=d["url"], expires_at=int(d["expires_at"]))


@dataclass(frozen=True, slots=True)
class LoginLink:
    url: str

    @classmethod
    def from_dict(cls, d: Json) -> LoginLink:
        return cls(url=d["url"])


@dataclass(frozen=True, slots=True)
class BalanceTransaction:
    id: str
    amount: int
    fee: int
    net: int
    currency: str
    type: str
    source: str | None
    status: str
    available_on: int
    created: int
    reporting_category: str | None

    @classmethod
    def from_dict(cls, d: Json) -> BalanceTransaction:
        return cls(
            id=d["id"],
            amount=int(d["amount"]),
            fee=int(d.get("fee") or 0),
            net=int(d["net"]),
            currency=d["currency"],
            type=d["type"],
            source=_id_of(d.get("source")),
            status=d.get("status") or "available",
            available_on=int(d.get("available_on") or 0),
            created=int(d.get("created") or 0),
            reporting_category=d.get("reporting_category"),
        )


def _expanded(value: object, parse: Callable[[Json], T]) -> T | None:
    return parse(value) if isinstance(value, Mapping) else None


def _balance_transaction(value: object) -> BalanceTransaction | None:
    # Only an expanded balance transaction carries the fee; a bare id does not.
    return BalanceTransaction.from_dict(value) if isinstance(value, Mapping) else None


@dataclass(frozen=True, slots=True)
class Charge:
    id: str
    amount: int
    amount_refunded: int
    currency: str
    payment_intent_id: str | None
    balance_transaction: BalanceTransaction | None
    balance_transaction_id: str | None
    transfer_group: str | None
    metadata: dict[str, str]
    refunded: bool
    disputed: bool
    created: int

    @classmethod
    def from_dict(cls, d: Json) -> Charge:
        return cls(
            id=d["id"],
            amount=int(d["amount"]),
            amount_refunded=int(d.get("amount_refunded") or 0),
            currency=d["currency"],
            payment_intent_id=_id_of(d.get("payment_intent")),
            balance_transaction=_balance_transaction(d.get("balance_transaction")),
            balance_transaction_id=_id_of(d.get("balance_transaction")),
            transfer_group=d.get("transfer_group"),
            metadata=_metadata(d),
            refunded=bool(d.get("refunded")),
            disputed=bool(d.get("disputed")),
            created=int(d.get("created") or 0),
        )

    @property
    def fee(self) -> int | None:
        return self.balance_transaction.fee if self.balance_transaction else None


@dataclass(frozen=True, slots=True)
class PaymentIntent:
    id: str
    status: str
    amount: int
    currency: str
    latest_charge: Charge | None
    latest_charge_id: str | None
    metadata: dict[str, str]
    last_payment_error_message: str | None
    transfer_group: str | None

    @classmethod
    def from_dict(cls, d: Json) -> PaymentIntent:
        charge = d.get("latest_charge")
        error = d.get("last_payment_error") or {}
        return cls(
            id=d["id"],
            status=d["status"],
            amount=int(d["amount"]),
            currency=d["currency"],
            latest_charge=Charge.from_dict(charge) if isinstance(charge, Mapping) else None,
            latest_charge_id=_id_of(charge),
            metadata=_metadata(d),
            last_payment_error_message=error.get("message"),
            transfer_group=d.get("transfer_group"),
        )


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    id: str
    url: str | None
    status: str | None  # open / complete / expired
    payment_status: str  # paid / unpaid / no_payment_required
    payment_intent_id: str | None
    amount_total: int | None
    currency: str | None
    expires_at: int
    metadata: dict[str, str]
    client_reference_id: str | None
    customer_id: str | None = None

    @classmethod
    def from_dict(cls, d: Json) -> CheckoutSession:
        return cls(
            id=d["id"],
            url=d.get("url"),
            status=d.get("status"),
            payment_status=d.get("payment_status") or "unpaid",
            payment_intent_id=_id_of(d.get("payment_intent")),
            amount_total=d.get("amount_total"),
            currency=d.get("currency"),
            expires_at=int(d.get("expires_at") or 0),
            metadata=_metadata(d),
            client_reference_id=d.get("client_reference_id"),
            customer_id=_id_of(d.get("customer")),
        )


@dataclass(frozen=True, slots=True)
class Refund:
    id: str
    amount: int
    currency: str
    charge_id: str | None
    payment_intent_id: str | None
    status: str | None  # pending / requires_action / succeeded / failed / canceled
    metadata: dict[str, str]
    failure_reason: str | None
    charge: Charge | None = None  # only when retrieved with expand[]=charge

    @classmethod
    def from_dict(cls, d: Json) -> Refund:
        return cls(
            id=d["id"],
            amount=int(d["amount"]),
            currency=d["currency"],
            charge_id=_id_of(d.get("charge")),
            payment_intent_id=_id_of(d.get("payment_intent")),
            status=d.get("status"),
            metadata=_metadata(d),
            failure_reason=d.get("failure_reason"),
            charge=_expanded(d.get("charge"), Charge.from_dict),
        )


@dataclass(frozen=True, slots=True)
class Transfer:
    id: str
    amount: int
    amount_reversed: int
    currency: str
    destination: str | None
    transfer_group: str | None
    metadata: dict[str, str]
    reversed: bool
    source_transaction: str | None
    created: int
    # The 10 most recent reversals Stripe embeds in a retrieved transfer (None
    # when the object came without them); page the rest with
    # ``list_transfer_reversals`` when ``reversals.has_more``.
    reversals: Page[TransferReversal] | None = None

    @classmethod
    def from_dict(cls, d: Json) -> Transfer:
        listed = d.get("reversals")
        return cls(
            id=d["id"],
            amount=int(d["amount"]),
            amount_reversed=int(d.get("amount_reversed") or 0),
            currency=d["currency"],
            destination=_id_of(d.get("destination")),
            transfer_group=d.get("transfer_group"),
            metadata=_metadata(d),
            reversed=bool(d.get("reversed")),
            source_transaction=_id_of(d.get("source_transaction")),
            created=int(d.get("created") or 0),
            reversals=(
                Page(
                    data=tuple(TransferReversal.from_dict(r) for r in listed.get("data") or []),
                    has_more=bool(listed.get("has_more")),
                )
                if isinstance(listed, Mapping)
                else None
            ),
        )


@dataclass(frozen=True, slots=True)
class TransferReversal:
    id: str
    amount: int
    currency: str
    transfer_id: str
    metadata: dict[str, str]
    created: int = 0

    @classmethod
    def from_dict(cls, d: Json) -> TransferReversal:
        return cls(
            id=d["id"],
            amount=int(d["amount"]),
            currency=d["currency"],
            transfer_id=str(_id_of(d.get("transfer"))),
            metadata=_metadata(d),
            created=int(d.get("created") or 0),
        )


@dataclass(frozen=True, slots=True)
class Balance:
    available: dict[str, int]  # currency -> minor units
    pending: dict[str, int]

    @classmethod
    def from_dict(cls, d: Json) -> Balance:
        return cls(
            available=_by_currency(d.get("available")), pending=_by_currency(d.get("pending"))
        )


def _by_currency(entries: object) -> dict[str, int]:
    # Stripe lists one entry per currency (sometimes split by source type).
    totals: dict[str, int] = {}
    for entry in entries if isinstance(entries, list) else []:
        totals[entry["currency"]] = totals.get(entry["currency"], 0) + int(entry["amount"])
    return totals


@dataclass(frozen=True, slots=True)
class Dispute:
    """A chargeback (``du_``); ``fee`` and ``fee_returned`` come from its balance
    transactions (the withdrawal carries Stripe's dispute fee, a won dispute's
    reinstatement gives it back as a negative fee)."""

    id: str
    amount: int
    currency: str
    status: str
    payment_intent_id: str | None
    charge_id: str | None
    fee: int
    fee_returned: int
    charge: Charge | None = None  # only when retrieved with expand[]=charge

    @classmethod
    def from_dict(cls, d: Json) -> Dispute:
        txns = [t for t in d.get("balance_transactions") or [] if isinstance(t, Mapping)]
        fee = int(txns[0].get("fee") or 0) if txns else 0
        returned = sum(-int(t.get("fee") or 0) for t in txns[1:] if int(t.get("fee") or 0) < 0)
        return cls(
            id=str(d["id"]),
            amount=int(d["amount"]),
            currency=str(d["currency"]),
            status=str(d.get("status") or ""),
            payment_intent_id=_id_of(d.get("payment_intent")),
            charge_id=_id_of(d.get("charge")),
            fee=fee,
            fee_returned=returned,
            charge=_expanded(d.get("charge"), Charge.from_dict),
        )


@dataclass(frozen=True, slots=True)
class StripePayout:
    """A payout (``po_``) from a connected account's balance to its bank."""

    id: str
    amount: int
    currency: str
    status: str  # pending / in_transit / paid / failed / canceled
    arrival_date: int | None
    failure_code: str | None
    failure_message: str | None
    created: int

    @classmethod
    def from_dict(cls, d: Json) -> StripePayout:
        arrival = d.get("arrival_date")
        return cls(
            id=str(d["id"]),
            amount=int(d["amount"]),
            currency=str(d["currency"]).lower(),
            status=str(d.get("status") or ""),
            arrival_date=int(arrival) if isinstance(arrival, int | float) else None,
            failure_code=d.get("failure_code"),
            failure_message=d.get("failure_message"),
            created=int(d.get("created") or 0),
        )


@dataclass(frozen=True, slots=True)
class StripeEvent:
    id: str
    type: str
    account: str | None  # set for events from a connected account
    created: int
    livemode: bool
    data_object: dict[str, Any]
    previous_attributes: dict[str, Any] | None
    raw: dict[str, Any]

    @classmethod
    def from_dict(cls, d: Json) -> StripeEvent:
        """Raise KeyError/TypeError/ValueError when ``d`` is not an event."""
        if d.get("object") != "event":
            raise ValueError("not an event object")
        data = d["data"]
        obj = data["object"]
        if not isinstance(obj, dict):
            raise TypeError("data.object is not an object")
        prev = data.get("previous_attributes")
        return cls(
            id=str(d["id"]),
            type=str(d["type"]),
            account=d.get("account"),
            created=int(d["created"]),
            livemode=bool(d.get("livemode")),
            data_object=obj,
            previous_attributes=prev if isinstance(prev, dict) else None,
            raw=dict(d),
        )


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    email: str | None
    name: str | None
    metadata: dict[str, str]
    deleted: bool

    @classmethod
    def from_dict(cls, d: Json) -> Customer:
        return cls(
            id=str(d["id"]),
            email=d.get("email"),
            name=d.get("name"),
            metadata=_metadata(d),
            deleted=bool(d.get("deleted")),
        )
