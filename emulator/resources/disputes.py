"""Disputes (chargebacks and inquiries): opened, escalated and closed only through the
control API, as a bank would; read through `GET /v1/disputes[/{id}]`, as on Stripe."""

from __future__ import annotations

from emulator.errors import ControlError
from emulator.forms import get_str
from emulator.money import dispute_fee
from emulator.resources.common import equals, fetch, list_response, only_params, render
from emulator.router import Ctx, Router
from emulator.store import Obj, Store

INQUIRY_OPEN = ("warning_needs_response", "warning_under_review")


def register(router: Router) -> None:
    router.add("GET", "/v1/disputes", list_disputes)
    router.add("GET", "/v1/disputes/{id}", get_dispute)


def get_dispute(ctx: Ctx) -> Obj:
    only_params(ctx)
    return render(ctx, fetch(ctx, "disputes", "dispute", ctx.arg("id")))


def list_disputes(ctx: Ctx) -> Obj:
    charge_id = get_str(ctx.params, "charge")
    intent_id = get_str(ctx.params, "payment_intent")
    key = f"disputes:charge:{charge_id}" if charge_id else "disputes"
    return list_response(
        ctx,
        "/v1/disputes",
        key,
        ("charge", "payment_intent"),
        (equals("payment_intent", intent_id),),
    )


def refundable(store: Store, charge: Obj) -> bool:
    """A disputed charge can still be refunded while its dispute is an inquiry."""
    index = store.indexes.get(f"disputes:charge:{charge['id']}")
    disputes = [store.objects[i] for i in index.ids] if index is not None else []
    return all(d["is_charge_refundable"] for d in disputes)


def _withdraw(store: Store, dispute: Obj, charge: Obj) -> None:
    """Stripe takes the disputed amount and its dispute fee from the balance."""
    currency = dispute["currency"]
    txn = store.add_balance_transaction(
        amount=-dispute["amount"],
        currency=currency,
        type="adjustment",
        source=dispute["id"],
        reporting_category="dispute",
        fee=dispute_fee(currency, store.config.dispute_fee),
        fee_description="Dispute fee",
        description=f"Chargeback withdrawal for {charge['id']}",
    )
    dispute["balance_transactions"].append(txn)
    dispute["is_charge_refundable"] = False


def open_dispute(
    store: Store, charge: Obj, amount: int | None, reason: str, *, inquiry: bool = False
) -> Obj:
    """A chargeback (funds withdrawn at once) or, with ``inquiry``, a retrieval request
    (``warning_needs_response``, nothing withdrawn unless it is escalated)."""
    if charge["status"] != "succeeded":
        raise ControlError("only a succeeded charge can be disputed")
    if charge["disputed"]:
        raise ControlError("charge is already disputed")
    amount = charge["amount"] - charge["amount_refunded"] if amount is None else amount
    if amount < 1 or amount > charge["amount"] - charge["amount_refunded"]:
        raise ControlError("amount must be between 1 and what the charge still holds")
    currency = charge["currency"]
    dispute_id = store.new_id("du_")
    dispute: Obj = {
        "id": dispute_id,
        "object": "dispute",
        "amount": amount,
        "balance_transactions": [],
        "charge": charge["id"],
        "created": store.now(),
        "currency": currency,
        "evidence": {"customer_email_address": charge["billing_details"]["email"]},
        "evidence_details": {
            "due_by": store.now() + 7 * 86400,
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        "is_charge_refundable": True,
        "livemode": False,
        "metadata": {},
        "payment_intent": charge["payment_intent"],
        "reason": reason,
        "status": "warning_needs_response" if inquiry else "needs_response",
    }
    store.add("disputes", dispute, (f"disputes:charge:{charge['id']}",))
    charge["disputed"] = True
    if not inquiry:
        _withdraw(store, dispute, charge)
    store.emit("charge.dispute.created", dispute)
    if not inquiry:
        store.emit("charge.dispute.funds_withdrawn", dispute)
    return dispute


def escalate(store: Store, dispute: Obj) -> Obj:
    """An inquiry becomes a chargeback: the funds leave now."""
    if dispute["status"] not in INQUIRY_OPEN:
        raise ControlError(f"dispute is {dispute['status']}, not an open inquiry")
    charge = store.tables["charges"][dispute["charge"]]
    previous = {"status": dispute["status"]}
    dispute["status"] = "needs_response"
    _withdraw(store, dispute, charge)
    store.emit("charge.dispute.updated", dispute, previous=previous)
    store.emit("charge.dispute.funds_withdrawn", dispute)
    return dispute


def close_dispute(store: Store, dispute: Obj, outcome: str) -> Obj:
    """``won`` / ``lost`` for a chargeback; an inquiry closes as ``warning_closed``."""
    inquiry = dispute["status"] in INQUIRY_OPEN
    allowed = ("warning_closed",) if inquiry else ("won", "lost")
    if dispute["status"] in ("won", "lost", "warning_closed"):
        raise ControlError(f"dispute is already {dispute['status']}")
    if outcome not in allowed:
        raise ControlError(f"outcome must be {' or '.join(allowed)}")
    previous = {"status": dispute["status"]}
    dispute["status"] = outcome
    if outcome == "won":
        withdrawn = dispute["balance_transactions"][0]
        # Winning gives back both the disputed amount and the dispute fee.
        txn = store.add_balance_transaction(
            amount=dispute["amount"],
            currency=dispute["currency"],
            type="adjustment",
            source=dispute["id"],
            reporting_category="dispute_reversal",
            fee=-withdrawn["fee"],
            fee_description="Dispute fee refund",
            description=f"Chargeback reversal for {dispute['charge']}",
        )
        dispute["balance_transactions"].append(txn)
    store.emit("charge.dispute.closed", dispute, previous=previous)
    if outcome == "won":
        store.emit("charge.dispute.funds_reinstated", dispute)
    return dispute
