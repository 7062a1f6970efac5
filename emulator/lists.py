"""Append-only indexes and Stripe list pagination.

Every object gets a global sequence number at creation; an index keeps (seq, id) in creation
order, so `starting_after` / `ending_before` are a bisect away and a page costs O(log n + limit)
whatever the number of transfers (the payouts benchmark creates tens of thousands).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable
from typing import Any

from emulator.errors import StripeError
from emulator.forms import check_known, get_dict, get_int, get_str

Predicate = Callable[[dict[str, Any]], bool]

LIST_PARAMS = ("limit", "starting_after", "ending_before", "expand")


class Index:
    __slots__ = ("ids", "seqs")

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.ids: list[str] = []

    def add(self, seq: int, obj_id: str) -> None:
        self.seqs.append(seq)
        self.ids.append(obj_id)

    def __len__(self) -> int:
        return len(self.ids)


def created_predicate(params: dict[str, Any]) -> Predicate | None:
    """`created[gte]=...` and friends (or `created=<ts>`) as a filter on objects."""
    raw = params.get("created")
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        exact = get_int(params, "created")
        return lambda obj: obj["created"] == exact
    bounds = get_dict(params, "created")
    check_known(bounds, ("gt", "gte", "lt", "lte"), "created")
    gt, gte = get_int(bounds, "gt"), get_int(bounds, "gte")
    lt, lte = get_int(bounds, "lt"), get_int(bounds, "lte")

    def check(obj: dict[str, Any]) -> bool:
        created: int = obj["created"]
        return (
            (gt is None or created > gt)
            and (gte is None or created >= gte)
            and (lt is None or created < lt)
            and (lte is None or created <= lte)
        )

    return check


def page(
    index: Index,
    lookup: Callable[[str], dict[str, Any]],
    seq_of: Callable[[str], int | None],
    params: dict[str, Any],
    predicates: list[Predicate | None],
) -> tuple[list[dict[str, Any]], bool]:
    """One page, newest first, as Stripe lists do."""
    limit = get_int(params, "limit", minimum=1)
    limit = 10 if limit is None else limit
    if limit > 100:
        raise StripeError(
            "This value must be less than or equal to 100.",
            code="parameter_invalid_integer",
            param="limit",
        )
    after = get_str(params, "starting_after")
    before = get_str(params, "ending_before")
    if after and before:
        raise StripeError(
            "You may only specify one of these parameters: ending_before, starting_after.",
            code="parameter_invalid",
        )
    checks = [p for p in predicates if p is not None]

    def keep(obj_id: str) -> dict[str, Any] | None:
        obj = lookup(obj_id)
        return obj if all(check(obj) for check in checks) else None

    found: list[dict[str, Any]] = []
    if before:
        # The `limit` objects just newer than the cursor, still returned newest first.
        start = bisect_right(index.seqs, _cursor(seq_of, before, "ending_before"))
        position = start
        while position < len(index.ids) and len(found) <= limit:
            obj = keep(index.ids[position])
            if obj is not None:
                found.append(obj)
            position += 1
        has_more = len(found) > limit
        return list(reversed(found[:limit])), has_more
    end = len(index.ids)
    if after:
        end = bisect_left(index.seqs, _cursor(seq_of, after, "starting_after"))
    position = end - 1
    while position >= 0 and len(found) <= limit:
        obj = keep(index.ids[position])
        if obj is not None:
            found.append(obj)
        position -= 1
    return found[:limit], len(found) > limit


def _cursor(seq_of: Callable[[str], int | None], obj_id: str, param: str) -> int:
    seq = seq_of(obj_id)
    if seq is None:
        raise StripeError(
            f"No such object: '{obj_id}'", status=404, code="resource_missing", param=param
        )
    return seq


def list_object(url: str, data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}
