"""`expand[]`: replace id fields by the objects they name (dotted paths, `data.` for lists)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from emulator.errors import StripeError
from emulator.store import Obj, Store, clone

# Fields that are not an id on the object but can still be expanded (Stripe's "includable" ones).
Virtual = Callable[[Store, Obj], Any]
VIRTUAL: dict[tuple[str, str], Virtual] = {}


def expand(store: Store, obj: Obj, paths: list[str]) -> Obj:
    if not paths:
        return obj
    result = clone(obj)
    for path in paths:
        _expand_path(store, result, path.split("."), path)
    return result


def expand_list(store: Store, listing: Obj, paths: list[str]) -> Obj:
    inner = [p[len("data.") :] for p in paths if p.startswith("data.")]
    if len(inner) != len(paths):
        bad = next(p for p in paths if not p.startswith("data."))
        raise StripeError(
            f"This property cannot be expanded ({bad}).", code="parameter_invalid", param="expand"
        )
    if inner:
        listing["data"] = [expand(store, item, inner) for item in listing["data"]]
    return listing


def _expand_path(store: Store, node: Any, parts: list[str], full: str) -> None:
    if not isinstance(node, dict) or not parts:
        return
    head, rest = parts[0], parts[1:]
    if head == "data" and node.get("object") == "list":
        for item in node.get("data", []):
            _expand_path(store, item, rest, full)
        return
    virtual = VIRTUAL.get((str(node.get("object")), head))
    if virtual is not None:
        node[head] = virtual(store, node)
    elif head not in node:
        raise StripeError(
            f"This property cannot be expanded ({full}).", code="parameter_invalid", param="expand"
        )
    value = node[head]
    if isinstance(value, str):
        target = store.objects.get(value)
        if target is None:
            raise StripeError(
                f"This property cannot be expanded ({full}).",
                code="parameter_invalid",
                param="expand",
            )
        value = clone(target)
        node[head] = value
    _expand_path(store, value, rest, full)
