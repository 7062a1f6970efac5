"""The balance and its balance transactions."""

from __future__ import annotations

from emulator.forms import get_str
from emulator.resources.common import equals, fetch, list_response, only_params, render
from emulator.router import Ctx, Router
from emulator.store import Funds, Obj


def register(router: Router) -> None:
    router.add("GET", "/v1/balance", get_balance)
    router.add("GET", "/v1/balance_transactions", list_balance_transactions)
    router.add("GET", "/v1/balance_transactions/{id}", get_balance_transaction)


def render_balance(funds: dict[str, Funds]) -> Obj:
    currencies = sorted(funds) or ["usd"]

    def entries(kind: str) -> list[Obj]:
        result = []
        for cur in currencies:
            amount = getattr(funds[cur], kind) if cur in funds else 0
            result.append({"amount": amount, "currency": cur, "source_types": {"card": amount}})
        return result

    return {
        "object": "balance",
        "available": entries("available"),
        "connect_reserved": [{"amount": 0, "currency": cur} for cur in currencies],
        "livemode": False,
        "pending": entries("pending"),
    }


def get_balance(ctx: Ctx) -> Obj:
    only_params(ctx)
    if ctx.stripe_account:
        # A connected account's own balance (`Stripe-Account` header).
        fetch(ctx, "accounts", "account", ctx.stripe_account, "account")
        return render_balance(ctx.store.account_funds.get(ctx.stripe_account, {}))
    return render_balance(ctx.store.platform_funds)


def list_balance_transactions(ctx: Ctx) -> Obj:
    params = ctx.params
    txn_type = get_str(params, "type")
    source = get_str(params, "source")
    if source is not None:
        key = f"balance_transactions:source:{source}"
    elif txn_type is not None:
        key = f"balance_transactions:type:{txn_type}"
    else:
        key = "balance_transactions"
    return list_response(
        ctx,
        "/v1/balance_transactions",
        key,
        ("type", "source", "currency", "payout"),
        (
            equals("type", txn_type),
            equals("currency", get_str(params, "currency")),
        ),
    )


def get_balance_transaction(ctx: Ctx) -> Obj:
    only_params(ctx)
    return render(
        ctx, fetch(ctx, "balance_transactions", "balance transaction", ctx.arg("id"), "id")
    )
