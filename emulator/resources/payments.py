"""PaymentIntents, Charges and Refunds (and the money movements a payment makes)."""

from __future__ import annotations

from typing import Any

from emulator.errors import StripeError, not_found
from emulator.forms import get_int, get_metadata, get_str
from emulator.money import exponent, processing_fee
from emulator.resources import disputes
from emulator.resources.common import (
    equals,
    fetch,
    list_response,
    only_params,
    positive_amount,
    render,
)
from emulator.router import Ctx, Router
from emulator.store import Obj, Store, clone

CARD = {
    "brand": "visa",
    "country": "US",
    "exp_month": 12,
    "exp_year": 2034,
    "fingerprint": "emulatorcard0001",
    "funding": "credit",
    "last4": "4242",
    "network": "visa",
}


def register(router: Router) -> None:
    router.add("GET", "/v1/payment_intents/{id}", get_payment_intent)
    router.add("GET", "/v1/charges/{id}", get_charge)
    router.add("POST", "/v1/refunds", create_refund)
    router.add("GET", "/v1/refunds", list_refunds)
    router.add("GET", "/v1/refunds/{id}", get_refund)


def get_payment_intent(ctx: Ctx) -> Obj:
    only_params(ctx, "client_secret")
    return render(ctx, fetch(ctx, "payment_intents", "payment_intent", ctx.arg("id"), "intent"))


def get_charge(ctx: Ctx) -> Obj:
    only_params(ctx)
    return render(ctx, fetch(ctx, "charges", "charge", ctx.arg("id"), "charge"))


# ---- payment creation (driven by Checkout) -----------------------------------------------------


def new_payment_intent(
    store: Store, *, amount: int, currency: str, settings: dict[str, Any], email: str | None
) -> Obj:
    pi_id = store.new_id("pi_")
    intent: Obj = {
        "id": pi_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_received": 0,
        "application": None,
        "application_fee_amount": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic_async",
        "client_secret": f"{pi_id}_secret_{store.new_id('', 25)}",
        "confirmation_method": "automatic",
        "created": store.now(),
        "currency": currency,
        "customer": None,
        "description": settings.get("description"),
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "metadata": dict(settings.get("metadata") or {}),
        "on_behalf_of": None,
        "payment_method": None,
        "payment_method_types": ["card"],
        "receipt_email": settings.get("receipt_email") or email,
        "statement_descriptor": settings.get("statement_descriptor"),
        "status": "requires_payment_method",
        "transfer_data": None,
        "transfer_group": settings.get("transfer_group"),
    }
    store.add("payment_intents", intent)
    store.emit("payment_intent.created", intent)
    return intent


def charge(store: Store, intent: Obj, *, succeeded: bool, email: str | None) -> Obj:
    """A card charge on the intent; a successful one credits the platform balance, minus fees."""
    amount, currency = intent["amount"], intent["currency"]
    charge_id = store.new_id("ch_")
    intent["payment_method"] = intent["payment_method"] or store.new_id("pm_")
    txn_id = None
    if succeeded:
        config = store.config
        fee = processing_fee(amount, currency, bps=config.fee_bps, fixed=config.fee_fixed)
        delay = config.funds_delay_seconds
        txn = store.add_balance_transaction(
            amount=amount,
            currency=currency,
            type="charge",
            source=charge_id,
            reporting_category="charge",
            fee=fee,
            description=intent["description"],
            pending_until=store.now() + delay if delay > 0 else None,
        )
        txn_id = txn["id"]
    declined = {
        "network_status": "declined_by_network",
        "reason": "generic_decline",
        "risk_level": "normal",
        "seller_message": "The bank did not return any further details with this decline.",
        "type": "issuer_declined",
    }
    approved = {
        "network_status": "approved_by_network",
        "reason": None,
        "risk_level": "normal",
        "seller_message": "Payment complete.",
        "type": "authorized",
    }
    record: Obj = {
        "id": charge_id,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount if succeeded else 0,
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": txn_id,
        "billing_details": {
            "address": {
                "city": None,
                "country": None,
                "line1": None,
                "line2": None,
                "postal_code": None,
                "state": None,
            },
            "email": email,
            "name": None,
            "phone": None,
        },
        "captured": succeeded,
        "created": store.now(),
        "currency": currency,
        "customer": None,
        "description": intent["description"],
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": None if succeeded else "card_declined",
        "failure_message": None if succeeded else "Your card was declined.",
        "livemode": False,
        "metadata": dict(intent["metadata"]),
        "on_behalf_of": None,
        "outcome": approved if succeeded else declined,
        "paid": succeeded,
        "payment_intent": intent["id"],
        "payment_method": intent["payment_method"],
        "payment_method_details": {"card": dict(CARD), "type": "card"},
        "receipt_email": intent["receipt_email"],
        "receipt_url": None,
        "refunded": False,
        "source_transfer": None,
        "statement_descriptor": intent["statement_descriptor"],
        "status": "succeeded" if succeeded else "failed",
        "transfer_data": None,
        "transfer_group": intent["transfer_group"],
    }
    store.add("charges", record, (f"charges:payment_intent:{intent['id']}",))
    intent["latest_charge"] = charge_id
    if succeeded:
        intent["status"] = "succeeded"
        intent["amount_received"] = amount
        intent["last_payment_error"] = None
        store.emit("charge.succeeded", record)
        store.emit("payment_intent.succeeded", intent)
    else:
        fail_intent(store, intent, charge_id)
        store.emit("charge.failed", record)
        store.emit("payment_intent.payment_failed", intent)
    return record


def fail_intent(store: Store, intent: Obj, charge_id: str | None) -> None:
    intent["status"] = "requires_payment_method"
    intent["last_payment_error"] = {
        "charge": charge_id,
        "code": "card_declined",
        "decline_code": "generic_decline",
        "doc_url": "https://stripe.com/docs/error-codes/card-declined",
        "message": "Your card was declined.",
        "type": "card_error",
    }


# ---- refunds -------------------------------------------------------------------------------------


def _money(amount: int, currency: str) -> str:
    exp = exponent(currency)
    if exp == 0:
        return f"{amount} {currency.upper()}"
    whole, frac = divmod(amount, 10**exp)
    symbol = "$" if currency == "usd" else ""
    suffix = "" if symbol else f" {currency.upper()}"
    return f"{symbol}{whole}.{frac:0{exp}d}{suffix}"


def create_refund(ctx: Ctx) -> Obj:
    params = ctx.params
    only_params(
        ctx,
        "charge",
        "payment_intent",
        "amount",
        "reason",
        "metadata",
        "refund_application_fee",
        "reverse_transfer",
        "instructions_email",
    )
    store = ctx.store
    charge_id = get_str(params, "charge")
    intent_id = get_str(params, "payment_intent")
    if charge_id and intent_id:
        raise StripeError(
            "You cannot specify both a charge and a payment_intent.", code="parameter_invalid"
        )
    if intent_id:
        intent = fetch(ctx, "payment_intents", "payment_intent", intent_id, "payment_intent")
        charge_id = intent["latest_charge"]
        if intent["status"] != "succeeded" or charge_id is None:
            raise StripeError(
                f"This PaymentIntent ({intent_id}) does not have a successful charge to refund.",
                param="payment_intent",
            )
    if not charge_id:
        raise StripeError(
            "One of the following params should be provided for this request: "
            "payment_intent or charge.",
            code="parameter_missing",
        )
    record = fetch(ctx, "charges", "charge", charge_id, "charge")
    amount = get_int(params, "amount")
    reason = get_str(params, "reason")
    if reason is not None and reason not in ("duplicate", "fraudulent", "requested_by_customer"):
        raise StripeError(
            f"Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer "
            f"({reason})",
            code="parameter_invalid",
            param="reason",
        )
    metadata = get_metadata(params) or {}
    if not record["paid"]:
        raise StripeError(f"Charge {charge_id} has not been captured.", param="charge")
    if record["disputed"] and not disputes.refundable(store, record):
        raise StripeError(
            f"Charge {charge_id} has been charged back; cannot issue a refund.",
            code="charge_disputed",
            param="charge",
        )
    remaining = record["amount"] - record["amount_refunded"]
    if remaining <= 0:
        raise StripeError(
            f"Charge {charge_id} has already been refunded.",
            code="charge_already_refunded",
            param="charge",
        )
    amount = remaining if amount is None else positive_amount(amount)
    currency = record["currency"]
    if amount > remaining:
        raise StripeError(
            f"Refund amount ({_money(amount, currency)}) is greater than unrefunded amount on "
            f"charge ({_money(remaining, currency)})",
            code="amount_too_large",
            param="amount",
        )
    return render(ctx, refund(store, record, amount, reason=reason, metadata=metadata))


def refund(
    store: Store, record: Obj, amount: int, *, reason: str | None, metadata: dict[str, str]
) -> Obj:
    refund_id = store.new_id("re_")
    txn = store.add_balance_transaction(
        amount=-amount,
        currency=record["currency"],
        type="refund",
        source=refund_id,
        reporting_category="refund",
        description="REFUND FOR CHARGE",
    )
    obj: Obj = {
        "id": refund_id,
        "object": "refund",
        "amount": amount,
        "balance_transaction": txn["id"],
        "charge": record["id"],
        "created": store.now(),
        "currency": record["currency"],
        "destination_details": {"card": {"type": "refund"}, "type": "card"},
        "metadata": metadata,
        "payment_intent": record["payment_intent"],
        "reason": reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "succeeded",
        "transfer_reversal": None,
    }
    store.add(
        "refunds",
        obj,
        (f"refunds:charge:{record['id']}", f"refunds:payment_intent:{record['payment_intent']}"),
    )
    previous = {"amount_refunded": record["amount_refunded"], "refunded": record["refunded"]}
    record["amount_refunded"] += amount
    record["refunded"] = record["amount_refunded"] >= record["amount"]
    store.emit("refund.created", obj)
    store.emit("charge.refunded", record, previous=clone(previous))
    return obj


# Why a refund fails, as Stripe names it (the refund's ``failure_reason``).
FAILURE_REASONS = frozenset(
    {"charge_for_pending_refund_disputed", "declined", "expired_or_canceled_card",
     "insufficient_funds", "lost_or_stolen_card", "merchant_request", "unknown"}
)  # fmt: skip


def fail_refund(store: Store, obj: Obj, failure_reason: str) -> Obj:
    """What Stripe does when the card network returns a refund: the refund fails,
    its amount comes back to the balance (a ``refund_failure`` balance transaction)
    and to the charge's unrefunded amount. ValueError for a refund that was not
    made or an unknown reason."""
    if obj["status"] not in ("succeeded", "pending"):
        raise ValueError(f"refund {obj['id']} is {obj['status']}: only a made refund can fail")
    if failure_reason not in FAILURE_REASONS:
        raise ValueError(f"failure_reason must be one of {', '.join(sorted(FAILURE_REASONS))}")
    record = store.get("charges", obj["charge"])
    if record is None:
        raise ValueError(f"refund {obj['id']} has no charge")
    txn = store.add_balance_transaction(
        amount=obj["amount"],
        currency=obj["currency"],
        type="refund_failure",
        source=obj["id"],
        reporting_category="refund_failure",
        description="REFUND FAILURE",
    )
    previous = {"status": obj["status"]}
    obj.update(
        status="failed", failure_reason=failure_reason, failure_balance_transaction=txn["id"]
    )
    record["amount_refunded"] -= obj["amount"]
    record["refunded"] = record["amount_refunded"] >= record["amount"]
    store.emit("refund.updated", obj, previous=previous)
    store.emit("refund.failed", obj)
    return obj


def list_refunds(ctx: Ctx) -> Obj:
    charge_id = get_str(ctx.params, "charge")
    intent_id = get_str(ctx.params, "payment_intent")
    if charge_id:
        key = f"refunds:charge:{charge_id}"
    elif intent_id:
        key = f"refunds:payment_intent:{intent_id}"
    else:
        key = "refunds"
    return list_response(
        ctx,
        "/v1/refunds",
        key,
        ("charge", "payment_intent"),
        (equals("payment_intent", intent_id),),
    )


def get_refund(ctx: Ctx) -> Obj:
    only_params(ctx)
    refund_id = ctx.arg("id")
    obj = ctx.store.get("refunds", refund_id)
    if obj is None:
        raise not_found("refund", refund_id)
    return render(ctx, obj)
