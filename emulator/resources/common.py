"""Helpers shared by the resource handlers."""

from __future__ import annotations

from emulator.errors import StripeError, not_found
from emulator.expand import expand, expand_list
from emulator.forms import check_known, get_expand
from emulator.lists import (
    LIST_PARAMS,
    Index,
    Predicate,
    created_predicate,
    list_object,
    page,
)
from emulator.router import Ctx
from emulator.store import Obj


def render(ctx: Ctx, obj: Obj) -> Obj:
    return expand(ctx.store, obj, get_expand(ctx.params))


def fetch(ctx: Ctx, table: str, kind: str, obj_id: str, param: str = "id") -> Obj:
    obj = ctx.store.get(table, obj_id)
    if obj is None:
        raise not_found(kind, obj_id, param)
    return obj


def only_params(ctx: Ctx, *allowed: str) -> None:
    check_known(ctx.params, (*allowed, "expand"))


def list_response(
    ctx: Ctx,
    url: str,
    index_key: str,
    filters: tuple[str, ...] = (),
    predicates: tuple[Predicate | None, ...] = (),
    with_created: bool = True,
) -> Obj:
    allowed = (*LIST_PARAMS, *filters, *(("created",) if with_created else ()))
    check_known(ctx.params, allowed)
    store = ctx.store
    # An index that does not exist yet is an empty list; still validate limit and cursors.
    index = store.indexes.get(index_key) or Index()
    preds = [*predicates, created_predicate(ctx.params) if with_created else None]
    data, has_more = page(index, store.objects.__getitem__, store.seq_of.get, ctx.params, preds)
    listing = list_object(url, data, has_more)
    return expand_list(store, listing, get_expand(ctx.params))


def equals(field: str, value: str | None) -> Predicate | None:
    if value is None:
        return None
    return lambda obj: obj.get(field) == value


def positive_amount(amount: int | None, param: str = "amount") -> int:
    if amount is None or amount < 1:
        raise StripeError(
            "This value must be greater than or equal to 1.",
            code="parameter_invalid_integer",
            param=param,
        )
    return amount
