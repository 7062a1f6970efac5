"""Transfers to connected accounts and their reversals."""

from __future__ import annotations

from emulator.errors import StripeError, not_found
from emulator.forms import get_currency, get_int, get_metadata, get_str, missing
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

INSUFFICIENT_FUNDS = (
    "You have insufficient available funds in your Stripe account. Try adding funds directly to "
    "your available balance by creating Charges using the 4000000000000077 test card. See: "
    "https://stripe.com/docs/testing#available-balance"
)


EMBEDDED_REVERSALS = 10


def register(router: Router) -> None:
    router.add("POST", "/v1/transfers", create_transfer)
    router.add("GET", "/v1/transfers", list_transfers)
    router.add("GET", "/v1/transfers/{id}", get_transfer)
    router.add("POST", "/v1/transfers/{id}", update_transfer)
    router.add("POST", "/v1/transfers/{id}/reversals", create_reversal)
    router.add("GET", "/v1/transfers/{id}/reversals", list_reversals)


def create_transfer(ctx: Ctx) -> Obj:
    params = ctx.params
    only_params(
        ctx,
        "amount",
        "currency",
        "destination",
        "transfer_group",
        "metadata",
        "description",
        "source_transaction",
        "source_type",
    )
    store = ctx.store
    amount = get_int(params, "amount")
    if amount is None:
        raise missing("amount")
    positive_amount(amount)
    currency = get_currency(params)
    destination_id = get_str(params, "destination", required=True) or ""
    metadata = get_metadata(params) or {}
    transfer_group = get_str(params, "transfer_group")
    source_id = get_str(params, "source_transaction")
    destination = store.get("accounts", destination_id)
    if destination is None:
        raise not_found("destination", destination_id, "destination")
    source = None
    if source_id is not None:
        source = store.get("charges", source_id)
        if source is None:
            raise not_found("charge", source_id, "source_transaction")
    # From here the endpoint is executing: Stripe stores these refusals under the idempotency key.
    if destination["capabilities"].get("transfers") != "active":
        raise StripeError(
            "Your destination account needs to have at least one of the following capabilities "
            "enabled: transfers, crypto_transfers, legacy_payments",
            code="insufficient_capabilities_for_transfer",
            param="destination",
        )
    from_pending = False
    if source is not None:
        if source["status"] != "succeeded" or source["currency"] != currency:
            raise StripeError(
                "The source_transaction must be a succeeded charge in the transfer's currency.",
                param="source_transaction",
            )
        if amount > source["amount"] - source["amount_refunded"]:
            raise StripeError(
                "Transfer amount exceeds the source transaction's remaining amount.",
                code="amount_too_large",
                param="amount",
            )
        txn = store.balance_transactions.get(source["balance_transaction"] or "")
        # Stripe holds such a transfer until the charge's funds are available: take them from
        # `pending` rather than refusing for a short available balance.
        from_pending = txn is not None and txn["status"] == "pending"
    if not from_pending and store.funds(currency).available < amount:
        raise StripeError(INSUFFICIENT_FUNDS, code="balance_insufficient")
    transfer_id = store.new_id("tr_")
    txn = store.add_balance_transaction(
        amount=-amount,
        currency=currency,
        type="transfer",
        source=transfer_id,
        reporting_category="transfer",
        from_pending=from_pending,
    )
    store.account_balance(destination_id, currency).available += amount
    transfer: Obj = {
        "id": transfer_id,
        "object": "transfer",
        "amount": amount,
        "amount_reversed": 0,
        "balance_transaction": txn["id"],
        "created": store.now(),
        "currency": currency,
        "description": get_str(params, "description"),
        "destination": destination_id,
        "destination_payment": store.new_id("py_"),
        "livemode": False,
        "metadata": metadata,
        "reversals": {
            "object": "list",
            "data": [],
            "has_more": False,
            "total_count": 0,
            "url": f"/v1/transfers/{transfer_id}/reversals",
        },
        "reversed": False,
        "source_transaction": source_id,
        "source_type": "card",
        "transfer_group": transfer_group,
    }
    keys = [f"transfers:destination:{destination_id}"]
    if transfer_group is not None:
        keys.append(f"transfers:group:{transfer_group}")
    store.add("transfers", transfer, tuple(keys))
    store.emit("transfer.created", transfer)
    return render(ctx, transfer)


def list_transfers(ctx: Ctx) -> Obj:
    params = ctx.params
    group = get_str(params, "transfer_group")
    destination = get_str(params, "destination")
    if group is not None:
        key = f"transfers:group:{group}"
        predicate = equals("destination", destination)
    elif destination is not None:
        key, predicate = f"transfers:destination:{destination}", None
    else:
        key, predicate = "transfers", None
    return list_response(ctx, "/v1/transfers", key, ("transfer_group", "destination"), (predicate,))


def get_transfer(ctx: Ctx) -> Obj:
    only_params(ctx)
    return render(ctx, fetch(ctx, "transfers", "transfer", ctx.arg("id"), "transfer"))


def update_transfer(ctx: Ctx) -> Obj:
    only_params(ctx, "metadata", "description")
    transfer = fetch(ctx, "transfers", "transfer", ctx.arg("id"), "transfer")
    metadata = get_metadata(ctx.params)
    if metadata is not None:
        transfer["metadata"] = {**transfer["metadata"], **metadata}
        transfer["metadata"] = {k: v for k, v in transfer["metadata"].items() if v != ""}
    if "description" in ctx.params:
        transfer["description"] = get_str(ctx.params, "description")
    return render(ctx, transfer)


def create_reversal(ctx: Ctx) -> Obj:
    params = ctx.params
    only_params(ctx, "amount", "metadata", "description", "refund_application_fee")
    store = ctx.store
    transfer = fetch(ctx, "transfers", "transfer", ctx.arg("id"), "transfer")
    amount = get_int(params, "amount")
    metadata = get_metadata(params) or {}
    remaining = transfer["amount"] - transfer["amount_reversed"]
    if remaining <= 0:
        raise StripeError(
            f"Transfer {transfer['id']} has already been fully reversed.",
            code="amount_too_large",
            param="amount",
        )
    amount = remaining if amount is None else positive_amount(amount)
    if amount > remaining:
        raise StripeError(
            f"The amount to reverse ({amount}) is greater than the amount remaining on the "
            f"transfer ({remaining}).",
            code="amount_too_large",
            param="amount",
        )
    return render(ctx, reverse(store, transfer, amount, metadata))


def reverse(store: Store, transfer: Obj, amount: int, metadata: dict[str, str]) -> Obj:
    reversal_id = store.new_id("trr_")
    currency = transfer["currency"]
    txn = store.add_balance_transaction(
        amount=amount,
        currency=currency,
        type="transfer_refund",
        source=reversal_id,
        reporting_category="transfer_reversal",
    )
    store.account_balance(transfer["destination"], currency).available -= amount
    reversal: Obj = {
        "id": reversal_id,
        "object": "transfer_reversal",
        "amount": amount,
        "balance_transaction": txn["id"],
        "created": store.now(),
        "currency": currency,
        "destination_payment_refund": store.new_id("pyr_"),
        "metadata": metadata,
        "source_refund": None,
        "transfer": transfer["id"],
    }
    store.add("transfer_reversals", reversal, (f"reversals:transfer:{transfer['id']}",))
    previous = {
        "amount_reversed": transfer["amount_reversed"],
        "reversed": transfer["reversed"],
        "reversals": clone(transfer["reversals"]),
    }
    transfer["amount_reversed"] += amount
    transfer["reversed"] = transfer["amount_reversed"] >= transfer["amount"]
    listing = transfer["reversals"]
    listing["data"].insert(0, clone(reversal))
    listing["total_count"] += 1
    # As Stripe: the transfer shows its 10 newest reversals; the rest are paged
    # through GET /v1/transfers/{id}/reversals.
    if len(listing["data"]) > EMBEDDED_REVERSALS:
        del listing["data"][EMBEDDED_REVERSALS:]
        listing["has_more"] = True
    store.emit("transfer.reversed", transfer, previous=previous)
    return reversal


def list_reversals(ctx: Ctx) -> Obj:
    transfer_id = ctx.arg("id")
    fetch(ctx, "transfers", "transfer", transfer_id, "transfer")
    return list_response(
        ctx,
        f"/v1/transfers/{transfer_id}/reversals",
        f"reversals:transfer:{transfer_id}",
        with_created=False,
    )
