"""Checkout Sessions: creation by the API, payment and expiry by the control API or the clock."""

from __future__ import annotations

from typing import Any

from emulator.errors import ControlError, StripeError
from emulator.expand import VIRTUAL
from emulator.forms import (
    check_known,
    get_currency,
    get_dict,
    get_int,
    get_metadata,
    get_str,
    missing,
)
from emulator.lists import list_object
from emulator.resources import customers, payments
from emulator.resources.common import equals, fetch, list_response, only_params, render
from emulator.router import Ctx, Router
from emulator.store import Obj, Store, clone

CREATE_PARAMS = (
    "mode",
    "line_items",
    "success_url",
    "cancel_url",
    "expires_at",
    "metadata",
    "client_reference_id",
    "customer_email",
    "customer",
    "payment_intent_data",
    "payment_method_types",
    "locale",
    "submit_type",
    "billing_address_collection",
    "allow_promotion_codes",
    "currency",
)
PI_DATA_PARAMS = (
    "transfer_group",
    "metadata",
    "description",
    "receipt_email",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "setup_future_usage",
    "capture_method",
)
MIN_EXPIRY, MAX_EXPIRY = 30 * 60, 24 * 60 * 60
MINIMUM_CHARGE = 50


def register(router: Router) -> None:
    router.add("POST", "/v1/checkout/sessions", create_session)
    router.add("GET", "/v1/checkout/sessions", list_sessions)
    router.add("GET", "/v1/checkout/sessions/{id}", get_session)
    router.add("POST", "/v1/checkout/sessions/{id}/expire", expire_session_api)
    router.add("GET", "/v1/checkout/sessions/{id}/line_items", get_line_items)
    VIRTUAL[("checkout.session", "line_items")] = _line_items_list


def _line_item(store: Store, index: int, raw: Any) -> Obj:
    if not isinstance(raw, dict):
        raise StripeError("Invalid line_items", code="parameter_invalid", param="line_items")
    name = f"line_items[{index}]"
    check_known(raw, ("price_data", "quantity", "price"), name)
    if "price" in raw:
        raise StripeError(
            "The emulator supports only price_data line items.",
            code="parameter_invalid",
            param=f"{name}[price]",
        )
    if "price_data" not in raw:
        raise missing(f"{name}[price_data]")
    price_data = get_dict(raw, "price_data")
    check_known(
        price_data,
        ("currency", "unit_amount", "product_data", "product", "tax_behavior"),
        f"{name}[price_data]",
    )
    currency = get_currency(price_data)
    if not currency:
        raise missing(f"{name}[price_data][currency]")
    unit_amount = get_int(price_data, "unit_amount", minimum=0)
    if unit_amount is None:
        raise missing(f"{name}[price_data][unit_amount]")
    product_data = get_dict(price_data, "product_data")
    product_name = get_str(product_data, "name")
    if product_name is None:
        raise missing(f"{name}[price_data][product_data][name]")
    quantity = get_int(raw, "quantity", minimum=1)
    if quantity is None:
        raise missing(f"{name}[quantity]")
    total = unit_amount * quantity
    return {
        "id": store.new_id("li_"),
        "object": "item",
        "amount_discount": 0,
        "amount_subtotal": total,
        "amount_tax": 0,
        "amount_total": total,
        "currency": currency,
        "description": product_name,
        "price": {
            "id": store.new_id("price_"),
            "object": "price",
            "active": False,
            "currency": currency,
            "livemode": False,
            "metadata": {},
            "product": store.new_id("prod_", 14),
            "type": "one_time",
            "unit_amount": unit_amount,
            "unit_amount_decimal": str(unit_amount),
        },
        "quantity": quantity,
    }


def create_session(ctx: Ctx) -> Obj:
    params = ctx.params
    only_params(ctx, *CREATE_PARAMS)
    store = ctx.store
    mode = get_str(params, "mode", required=True)
    if mode != "payment":
        raise StripeError(
            f"The emulator supports only mode=payment (got {mode}).",
            code="parameter_invalid",
            param="mode",
        )
    raw_items = params.get("line_items")
    if not raw_items:
        raise missing("line_items")
    if not isinstance(raw_items, list):
        raise StripeError("Invalid array", code="parameter_invalid", param="line_items")
    items = [_line_item(store, i, raw) for i, raw in enumerate(raw_items)]
    currencies = {item["currency"] for item in items}
    if len(currencies) > 1:
        raise StripeError("All line items must have the same currency.", code="parameter_invalid")
    currency = currencies.pop()
    total = sum(item["amount_total"] for item in items)
    if total < MINIMUM_CHARGE:
        raise StripeError(
            f"The Checkout Session's total amount due must add up to at least "
            f"{MINIMUM_CHARGE} {currency} minor units.",
            code="amount_too_small",
        )
    now = store.now()
    expires_at = get_int(params, "expires_at")
    if expires_at is None:
        expires_at = now + MAX_EXPIRY
    elif expires_at < now + MIN_EXPIRY - 5 or expires_at > now + MAX_EXPIRY + 5:
        # Stripe allows 30 minutes to 24 hours; a few seconds of slack for clock skew.
        raise StripeError(
            "The `expires_at` timestamp must be between 30 minutes and 24 hours from Checkout "
            "Session creation.",
            code="parameter_invalid",
            param="expires_at",
        )
    pi_data = get_dict(params, "payment_intent_data")
    check_known(pi_data, PI_DATA_PARAMS, "payment_intent_data")
    pi_settings = {
        "transfer_group": get_str(pi_data, "transfer_group"),
        "metadata": get_metadata(pi_data, "metadata") or {},
        "description": get_str(pi_data, "description"),
        "receipt_email": get_str(pi_data, "receipt_email"),
        "statement_descriptor": get_str(pi_data, "statement_descriptor"),
    }
    customer_id = get_str(params, "customer")
    customer_email = get_str(params, "customer_email")
    if customer_id is not None:
        if customer_email is not None:
            raise StripeError(
                "You may only specify one of these parameters: customer, customer_email.",
                code="parameter_invalid",
                param="customer_email",
            )
        # Checkout shows the customer's saved cards and prefills their email.
        customers.find(store, customer_id, "customer")
    client_reference_id = get_str(params, "client_reference_id")
    if client_reference_id is not None and len(client_reference_id) > 200:
        raise StripeError(
            "client_reference_id can be up to 200 characters.",
            code="parameter_invalid",
            param="client_reference_id",
        )
    session_id = store.new_id("cs_test_", 58)
    session: Obj = {
        "id": session_id,
        "object": "checkout.session",
        "after_expiration": None,
        "allow_promotion_codes": None,
        "amount_subtotal": total,
        "amount_total": total,
        "automatic_tax": {"enabled": False, "liability": None, "status": None},
        "billing_address_collection": get_str(params, "billing_address_collection"),
        "cancel_url": get_str(params, "cancel_url"),
        "client_reference_id": client_reference_id,
        "client_secret": None,
        "created": now,
        "currency": currency,
        "customer": customer_id,
        "customer_creation": "if_required",
        "customer_details": None,
        "customer_email": customer_email,
        "expires_at": expires_at,
        "invoice": None,
        "livemode": False,
        "locale": get_str(params, "locale"),
        "metadata": get_metadata(params) or {},
        "mode": "payment",
        "payment_intent": None,
        "payment_link": None,
        "payment_method_types": ["card"],
        "payment_status": "unpaid",
        "status": "open",
        "submit_type": get_str(params, "submit_type"),
        "success_url": get_str(params, "success_url"),
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted",
        "url": f"{ctx.base_url}/_emulator/checkout/{session_id}",
    }
    store.add("checkout_sessions", session)
    store.private[session_id] = {"line_items": items, "payment_intent_data": pi_settings}
    store.schedule_expiry(session_id, expires_at)
    return render(ctx, session)


def _line_items_list(store: Store, session: Obj) -> Obj:
    items = store.private.get(session["id"], {}).get("line_items", [])
    url = f"/v1/checkout/sessions/{session['id']}/line_items"
    return list_object(url, clone(items), False)


def get_line_items(ctx: Ctx) -> Obj:
    check_known(ctx.params, ("limit", "starting_after", "ending_before", "expand"))
    session = fetch(ctx, "checkout_sessions", "checkout.session", ctx.arg("id"), "session")
    return _line_items_list(ctx.store, session)


def list_sessions(ctx: Ctx) -> Obj:
    intent = get_str(ctx.params, "payment_intent")
    return list_response(
        ctx,
        "/v1/checkout/sessions",
        "checkout_sessions",
        ("payment_intent", "status", "customer", "customer_details"),
        (equals("payment_intent", intent), equals("status", get_str(ctx.params, "status"))),
    )


def get_session(ctx: Ctx) -> Obj:
    only_params(ctx)
    return render(
        ctx, fetch(ctx, "checkout_sessions", "checkout.session", ctx.arg("id"), "session")
    )


def expire_session_api(ctx: Ctx) -> Obj:
    only_params(ctx)
    session = fetch(ctx, "checkout_sessions", "checkout.session", ctx.arg("id"), "session")
    if session["status"] != "open":
        raise StripeError(
            f'Only Checkout Sessions with a status in ["open"] can be expired. This Checkout '
            f"Session has a status of {session['status']}.",
            param="session",
        )
    return render(ctx, expire(ctx.store, session))


def expire(store: Store, session: Obj) -> Obj:
    session["status"] = "expired"
    intent_id = session["payment_intent"]
    if intent_id is not None:
        intent = store.payment_intents[intent_id]
        if intent["status"] == "requires_payment_method":
            intent["status"] = "canceled"
            intent["canceled_at"] = store.now()
            intent["cancellation_reason"] = "abandoned"
            store.emit("payment_intent.canceled", intent)
    store.emit("checkout.session.expired", session)
    return session


def expire_due(store: Store) -> None:
    for session_id in store.due_sessions():
        session = store.checkout_sessions.get(session_id)
        if session is not None and session["status"] == "open":
            expire(store, session)


# ---- paying (control API) ------------------------------------------------------------------------

OUTCOMES = ("succeeded", "failed", "async_pending", "async_succeeded", "async_failed")


def pay(store: Store, session: Obj, outcome: str, email: str | None) -> Obj:
    if outcome not in OUTCOMES:
        raise ControlError(f"outcome must be one of {', '.join(OUTCOMES)}")
    email = email or session["customer_email"] or _customer_email(store, session)
    waiting = session["status"] == "complete" and session["payment_status"] == "unpaid"
    if outcome in ("async_succeeded", "async_failed") and waiting:
        intent = store.payment_intents[session["payment_intent"]]
        if intent["status"] != "processing":
            raise ControlError("the session's payment is not processing")
    elif session["status"] != "open":
        raise ControlError(f"session is {session['status']}, not open")
    else:
        intent = _intent_for(store, session, email)
        session["customer_details"] = {
            "address": None,
            "email": email,
            "name": None,
            "phone": None,
            "tax_exempt": "none",
            "tax_ids": [],
        }
    if outcome == "succeeded":
        payments.charge(store, intent, succeeded=True, email=email)
        session["status"] = "complete"
        session["payment_status"] = "paid"
        store.emit("checkout.session.completed", session)
    elif outcome == "failed":
        payments.charge(store, intent, succeeded=False, email=email)
    else:
        if not waiting:
            intent["status"] = "processing"
            store.emit("payment_intent.processing", intent)
            session["status"] = "complete"
            session["payment_status"] = "unpaid"
            store.emit("checkout.session.completed", session)
        if outcome == "async_succeeded":
            payments.charge(store, intent, succeeded=True, email=email)
            session["payment_status"] = "paid"
            store.emit("checkout.session.async_payment_succeeded", session)
        elif outcome == "async_failed":
            payments.fail_intent(store, intent, None)
            store.emit("payment_intent.payment_failed", intent)
            store.emit("checkout.session.async_payment_failed", session)
    return session


def _customer_email(store: Store, session: Obj) -> str:
    customer = customers.table(store).get(session["customer"] or "")
    return (customer or {}).get("email") or "mentee@example.com"


def _intent_for(store: Store, session: Obj, email: str) -> Obj:
    """The session's PaymentIntent; a retry after a decline reuses it, as Checkout does."""
    if session["payment_intent"] is not None:
        return store.payment_intents[session["payment_intent"]]
    settings = store.private.get(session["id"], {}).get("payment_intent_data", {})
    intent = payments.new_payment_intent(
        store,
        amount=session["amount_total"],
        currency=session["currency"],
        settings=settings,
        email=email,
    )
    # The session's customer pays: Stripe puts them on the PaymentIntent too.
    intent["customer"] = session["customer"]
    session["payment_intent"] = intent["id"]
    return intent
