"""Customers: as far as coachpay needs them (create, read, list; passed to Checkout)."""

from __future__ import annotations

from emulator.errors import StripeError, not_found
from emulator.forms import get_metadata, get_str
from emulator.resources.common import equals, list_response, only_params, render
from emulator.router import Ctx, Router
from emulator.store import Obj, Store

TABLE = "customers"
CREATE_PARAMS = ("email", "name", "description", "phone", "metadata")
MAX_EMAIL = 512


def register(router: Router) -> None:
    router.add("POST", "/v1/customers", create_customer)
    router.add("GET", "/v1/customers", list_customers)
    router.add("GET", "/v1/customers/{id}", get_customer)


def table(store: Store) -> dict[str, Obj]:
    # Not one of the store's fixed tables: made on first use (and again after a reset).
    return store.tables.setdefault(TABLE, {})


def find(store: Store, customer_id: str, param: str) -> Obj:
    """The customer named by another request's ``param``, or Stripe's 400 'No such customer'."""
    customer = table(store).get(customer_id)
    if customer is None or customer.get("deleted"):
        error = not_found("customer", customer_id, param)
        error.status = 400  # a bad parameter of that request, not a missing URL
        raise error
    return customer


def create_customer(ctx: Ctx) -> Obj:
    only_params(ctx, *CREATE_PARAMS)
    params = ctx.params
    email = get_str(params, "email")
    if email is not None and (len(email) > MAX_EMAIL or "@" not in email):
        raise StripeError(
            "Invalid email address: " + email[:64], code="email_invalid", param="email"
        )
    store = ctx.store
    table(store)
    customer: Obj = {
        "id": store.new_id("cus_", 14),
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": store.now(),
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": get_str(params, "description"),
        "email": email,
        "invoice_prefix": store.new_id("", 8).upper(),
        "livemode": False,
        "metadata": get_metadata(params) or {},
        "name": get_str(params, "name"),
        "phone": get_str(params, "phone"),
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
    }
    store.add(TABLE, customer)
    return render(ctx, customer)


def get_customer(ctx: Ctx) -> Obj:
    only_params(ctx)
    customer = table(ctx.store).get(ctx.arg("id"))
    if customer is None:
        raise not_found("customer", ctx.arg("id"))
    return render(ctx, customer)


def list_customers(ctx: Ctx) -> Obj:
    table(ctx.store)
    return list_response(
        ctx,
        "/v1/customers",
        TABLE,
        ("email",),
        (equals("email", get_str(ctx.params, "email")),),
    )
