"""Connect accounts, account links and login links, plus the onboarding state changes."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from emulator.errors import StripeError
from emulator.forms import (
    check_known,
    get_bool,
    get_dict,
    get_metadata,
    get_str,
    merge_metadata,
)
from emulator.resources.common import fetch, list_response, only_params, render
from emulator.router import Ctx, Router
from emulator.store import Obj, Store, clone, diff

# What a fresh Express account still owes Stripe before it may be paid.
INITIAL_DUE = [
    "business_profile.mcc",
    "business_profile.url",
    "business_type",
    "external_account",
    "individual.dob.day",
    "individual.dob.month",
    "individual.dob.year",
    "individual.email",
    "individual.first_name",
    "individual.last_name",
    "individual.phone",
    "tos_acceptance.date",
    "tos_acceptance.ip",
]

COUNTRY_CURRENCY = {
    "US": "usd",
    "GB": "gbp",
    "CA": "cad",
    "AU": "aud",
    "JP": "jpy",
    "CH": "chf",
    "SE": "sek",
    "DK": "dkk",
    "NO": "nok",
    "NZ": "nzd",
    "SG": "sgd",
}
EURO = {"AT", "BE", "DE", "ES", "FI", "FR", "IE", "IT", "LU", "NL", "PT", "GR"}

CREATE_PARAMS = (
    "type",
    "country",
    "email",
    "controller",
    "capabilities",
    "metadata",
    "business_type",
    "business_profile",
    "default_currency",
    "settings",
    "tos_acceptance",
    "individual",
    "company",
)
UPDATE_PARAMS = tuple(p for p in CREATE_PARAMS if p not in ("type", "country", "controller"))


def register(router: Router) -> None:
    router.add("POST", "/v1/accounts", create_account)
    router.add("GET", "/v1/accounts", list_accounts)
    router.add("GET", "/v1/accounts/{id}", get_account)
    router.add("POST", "/v1/accounts/{id}", update_account)
    router.add("POST", "/v1/account_links", create_account_link)
    router.add("POST", "/v1/accounts/{id}/login_links", create_login_link)


def _controller(params: dict[str, Any], account_type: str | None) -> tuple[Obj, str]:
    given = get_dict(params, "controller")
    check_known(
        given,
        ("fees", "losses", "stripe_dashboard", "requirement_collection"),
        "controller",
    )
    dashboard = get_dict(given, "stripe_dashboard").get("type")
    if dashboard is None:
        dashboard = {"express": "express", "standard": "full", "custom": "none"}.get(
            account_type or "", "full"
        )
    collection = given.get("requirement_collection") or (
        "application" if account_type == "custom" else "stripe"
    )
    controller: Obj = {
        "fees": {
            "payer": get_dict(given, "fees").get("payer")
            or ("application_express" if dashboard == "express" else "account")
        },
        "is_controller": True,
        "losses": {"payments": get_dict(given, "losses").get("payments") or "application"},
        "requirement_collection": collection,
        "stripe_dashboard": {"type": dashboard},
        "type": "application",
    }
    if account_type is None:
        account_type = {"express": "express", "full": "standard"}.get(
            dashboard, "custom" if collection == "application" else "none"
        )
    return controller, account_type


def create_account(ctx: Ctx) -> Obj:
    params = ctx.params
    only_params(ctx, *CREATE_PARAMS)
    account_type = get_str(params, "type")
    if account_type is not None and account_type not in ("express", "standard", "custom"):
        raise StripeError(
            f"Invalid type: must be one of custom, express, or standard ({account_type})",
            code="parameter_invalid",
            param="type",
        )
    controller, account_type = _controller(params, account_type)
    capabilities = {}
    for name, wanted in get_dict(params, "capabilities").items():
        if get_bool(wanted if isinstance(wanted, dict) else {}, "requested"):
            capabilities[name] = "inactive"
    country = (get_str(params, "country") or "US").upper()
    default_currency = get_str(params, "default_currency") or COUNTRY_CURRENCY.get(
        country, "eur" if country in EURO else "usd"
    )
    store = ctx.store
    account_id = store.new_id("acct_", 16)
    account: Obj = {
        "id": account_id,
        "object": "account",
        "business_profile": {
            "mcc": None,
            "name": None,
            "product_description": None,
            "support_email": None,
            "url": None,
            **get_dict(params, "business_profile"),
        },
        "business_type": get_str(params, "business_type"),
        "capabilities": capabilities,
        "charges_enabled": False,
        "controller": controller,
        "country": country,
        "created": store.now(),
        "default_currency": default_currency,
        "details_submitted": False,
        "email": get_str(params, "email"),
        "external_accounts": {
            "object": "list",
            "data": [],
            "has_more": False,
            "total_count": 0,
            "url": f"/v1/accounts/{account_id}/external_accounts",
        },
        "future_requirements": _requirements([], None),
        "metadata": get_metadata(params) or {},
        "payouts_enabled": False,
        "requirements": _requirements(list(INITIAL_DUE), "requirements.past_due"),
        "settings": {
            "payouts": {
                "debit_negative_balances": True,
                "schedule": {"delay_days": 2, "interval": "daily"},
                "statement_descriptor": None,
            }
        },
        "tos_acceptance": {"date": None, "ip": None, "user_agent": None},
        "type": account_type,
    }
    store.add("accounts", account)
    return render(ctx, account)


def _requirements(
    due: list[str], disabled_reason: str | None, past_due: list[str] | None = None
) -> Obj:
    return {
        "alternatives": [],
        "current_deadline": None,
        "currently_due": list(due),
        "disabled_reason": disabled_reason,
        "errors": [],
        "eventually_due": list(due),
        "past_due": list(due if past_due is None else past_due),
        "pending_verification": [],
    }


def list_accounts(ctx: Ctx) -> Obj:
    return list_response(ctx, "/v1/accounts", "accounts")


def get_account(ctx: Ctx) -> Obj:
    only_params(ctx)
    return render(ctx, fetch(ctx, "accounts", "account", ctx.arg("id"), "account"))


def update_account(ctx: Ctx) -> Obj:
    params = ctx.params
    only_params(ctx, *UPDATE_PARAMS)
    account = fetch(ctx, "accounts", "account", ctx.arg("id"), "account")
    before = clone(account)
    metadata = get_metadata(params)
    if metadata is not None:
        account["metadata"] = merge_metadata(account["metadata"], metadata)
    email = get_str(params, "email")
    if email is not None:
        account["email"] = email
    if "business_profile" in params:
        account["business_profile"].update(get_dict(params, "business_profile"))
    if "business_type" in params:
        account["business_type"] = get_str(params, "business_type")
    if "default_currency" in params:
        account["default_currency"] = get_str(params, "default_currency", required=True)
    for name, wanted in get_dict(params, "capabilities").items():
        if get_bool(wanted if isinstance(wanted, dict) else {}, "requested"):
            account["capabilities"].setdefault(name, "inactive")
    emit_account_updated(ctx.store, account, before)
    return render(ctx, account)


def emit_account_updated(store: Store, account: Obj, before: Obj) -> None:
    previous = diff(before, account)
    if previous:
        store.emit("account.updated", account, account=account["id"], previous=previous)


def create_account_link(ctx: Ctx) -> Obj:
    params = ctx.params
    check_known(
        params, ("account", "refresh_url", "return_url", "type", "collect", "collection_options")
    )
    account_id = get_str(params, "account", required=True) or ""
    fetch(ctx, "accounts", "account", account_id, "account")
    link_type = get_str(params, "type", required=True)
    if link_type not in ("account_onboarding", "account_update"):
        raise StripeError(
            f"Invalid type: must be one of account_onboarding or account_update ({link_type})",
            code="parameter_invalid",
            param="type",
        )
    query = {k: params[k] for k in ("return_url", "refresh_url") if get_str(params, k)}
    now = ctx.store.now()
    suffix = f"?{urlencode(query)}" if query else ""
    return {
        "object": "account_link",
        "created": now,
        "expires_at": now + 300,
        "url": f"{ctx.base_url}/_emulator/onboarding/{account_id}{suffix}",
    }


def create_login_link(ctx: Ctx) -> Obj:
    check_known(ctx.params, ("redirect_url",))
    account = fetch(ctx, "accounts", "account", ctx.arg("id"), "account")
    if account["controller"]["stripe_dashboard"]["type"] != "express":
        raise StripeError(
            "Cannot create a login link for an account that is not an Express account.",
            param="account",
        )
    return {
        "object": "login_link",
        "created": ctx.store.now(),
        "url": f"{ctx.base_url}/_emulator/dashboard/{account['id']}",
    }


# ---- state changes driven by the control API ---------------------------------------------------


def complete_onboarding(store: Store, account: Obj) -> Obj:
    before = clone(account)
    account["details_submitted"] = True
    account["charges_enabled"] = True
    account["payouts_enabled"] = True
    capabilities = account["capabilities"]
    capabilities.setdefault("transfers", "inactive")
    for name in capabilities:
        capabilities[name] = "active"
    account["requirements"] = _requirements([], None)
    account["tos_acceptance"]["date"] = account["tos_acceptance"]["date"] or store.now()
    emit_account_updated(store, account, before)
    return account


def restrict(store: Store, account: Obj, body: dict[str, Any]) -> Obj:
    before = clone(account)
    due = list(body.get("currently_due") or ["individual.verification.document"])
    given_past_due = body.get("past_due")
    past_due = list(given_past_due) if isinstance(given_past_due, list) else due
    account["requirements"] = _requirements(
        due, body.get("disabled_reason", "requirements.past_due"), past_due
    )
    account["charges_enabled"] = bool(body.get("charges_enabled", False))
    account["payouts_enabled"] = bool(body.get("payouts_enabled", False))
    transfers = body.get("transfers", "inactive")
    if "transfers" in account["capabilities"] or transfers != "inactive":
        account["capabilities"]["transfers"] = transfers
    emit_account_updated(store, account, before)
    return account


def disable(store: Store, account: Obj, reason: str) -> Obj:
    before = clone(account)
    account["charges_enabled"] = False
    account["payouts_enabled"] = False
    for name in account["capabilities"]:
        account["capabilities"][name] = "inactive"
    account["requirements"]["disabled_reason"] = reason
    emit_account_updated(store, account, before)
    return account
