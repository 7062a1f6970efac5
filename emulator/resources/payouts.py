"""Payouts from a connected account to its bank: made through the control API, read
through `GET /v1/payouts[/{id}]` with `Stripe-Account`, as on Stripe (a payout is an
object of the connected account: without the header, or with another account's, 404)."""

from __future__ import annotations

from emulator.errors import ControlError, not_found
from emulator.forms import get_str
from emulator.resources.common import equals, fetch, list_response, only_params, render
from emulator.router import Ctx, Router
from emulator.store import Obj, Store

FAILURE_MESSAGES = {
    "account_closed": "The bank account has been closed.",
    "account_frozen": "The bank account has been frozen.",
    "insufficient_funds": "Your Stripe account has insufficient funds to cover the payout.",
    "no_account": "The bank account details on file are probably incorrect.",
}


def register(router: Router) -> None:
    router.add("GET", "/v1/payouts", list_payouts)
    router.add("GET", "/v1/payouts/{id}", get_payout)


def _account(ctx: Ctx) -> str | None:
    """The connected account the request is made on (None: the platform's own)."""
    if ctx.stripe_account is None:
        return None
    fetch(ctx, "accounts", "account", ctx.stripe_account, "account")
    return ctx.stripe_account


def get_payout(ctx: Ctx) -> Obj:
    only_params(ctx)
    payout_id = ctx.arg("id")
    obj = ctx.store.get("payouts", payout_id)
    owner = ctx.store.private.get(payout_id, {}).get("account")
    if obj is None or owner is None or owner != _account(ctx):
        raise not_found("payout", payout_id)
    return render(ctx, obj)


def list_payouts(ctx: Ctx) -> Obj:
    account = _account(ctx)
    # The platform makes no payouts of its own here: its list is empty.
    key = f"payouts:account:{account}" if account else "payouts:platform"
    status = equals("status", get_str(ctx.params, "status"))
    return list_response(ctx, "/v1/payouts", key, ("status",), (status,))


def payout(
    store: Store,
    account: Obj,
    *,
    amount: int | None,
    currency: str | None,
    outcome: str,
    failure_code: str,
    force: bool,
) -> Obj:
    if outcome not in ("paid", "failed"):
        raise ControlError("outcome must be paid or failed")
    if not account["payouts_enabled"] and not force:
        raise ControlError("payouts are not enabled on this account")
    currency = (currency or account["default_currency"]).lower()
    funds = store.account_balance(account["id"], currency)
    amount = funds.available if amount is None else amount
    if amount < 1:
        raise ControlError("nothing to pay out")
    if amount > funds.available and not force:
        raise ControlError(f"account balance is {funds.available} {currency}, less than {amount}")
    funds.available -= amount
    now = store.now()
    obj: Obj = {
        "id": store.new_id("po_"),
        "object": "payout",
        "amount": amount,
        "arrival_date": now + 86400,
        "automatic": True,
        "balance_transaction": store.new_id("txn_"),
        "created": now,
        "currency": currency,
        "description": "STRIPE PAYOUT",
        "destination": store.new_id("ba_"),
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "livemode": False,
        "metadata": {},
        "method": "standard",
        "source_type": "card",
        "statement_descriptor": None,
        "status": "paid",
        "type": "bank_account",
    }
    if outcome == "failed":
        funds.available += amount
        obj["status"] = "failed"
        obj["failure_code"] = failure_code
        obj["failure_message"] = FAILURE_MESSAGES.get(failure_code, "The payout failed.")
        obj["failure_balance_transaction"] = store.new_id("txn_")
    store.add("payouts", obj, (f"payouts:account:{account['id']}",))
    store.private[obj["id"]] = {"account": account["id"]}
    store.emit(f"payout.{outcome}", obj, account=account["id"])
    return obj
