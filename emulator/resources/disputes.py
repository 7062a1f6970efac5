"""Disputes (chargebacks): opened and closed only through the control API, as a bank would."""

from __future__ import annotations

from emulator.errors import ControlError
from emulator.money import dispute_fee
from emulator.store import Obj, Store


def open_dispute(store: Store, charge: Obj, amount: int | None, reason: str) -> Obj:
    if charge["status"] != "succeeded":
        raise ControlError("only a succeeded charge can be disputed")
    if charge["disputed"]:
        raise ControlError("charge is already disputed")
    amount = charge["amount"] - charge["amount_refunded"] if amount is None else amount
    if amount < 1 or amount > charge["amount"] - charge["amount_refunded"]:
        raise ControlError("amount must be between 1 and what the charge still holds")
    currency = charge["currency"]
    fee = dispute_fee(currency, store.config.dispute_fee)
    dispute_id = store.new_id("du_")
    txn = store.add_balance_transaction(
        amount=-amount,
        currency=currency,
        type="adjustment",
        source=dispute_id,
        reporting_category="dispute",
        fee=fee,
        fee_description="Dispute fee",
        description=f"Chargeback withdrawal for {charge['id']}",
    )
    dispute: Obj = {
        "id": dispute_id,
        "object": "dispute",
        "amount": amount,
        "balance_transactions": [txn],
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
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
        "payment_intent": charge["payment_intent"],
        "reason": reason,
        "status": "needs_response",
    }
    store.add("disputes", dispute, (f"disputes:charge:{charge['id']}",))
    charge["disputed"] = True
    store.emit("charge.dispute.created", dispute)
    store.emit("charge.dispute.funds_withdrawn", dispute)
    return dispute


def close_dispute(store: Store, dispute: Obj, outcome: str) -> Obj:
    if outcome not in ("won", "lost"):
        raise ControlError("outcome must be won or lost")
    if dispute["status"] in ("won", "lost"):
        raise ControlError(f"dispute is already {dispute['status']}")
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
