"""Stripe's form encoding: bracket notation in, nested dicts/lists out, plus typed param readers.

Stripe clients send `metadata[k]=v`, `expand[]=x` or `expand[0]=x`, and
`line_items[0][price_data][unit_amount]=500`. Every value arrives as a string; handlers convert
with the readers below, which raise Stripe's own validation errors.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from emulator.errors import StripeError

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")

# Dicts whose keys are user data: never turned into lists even when every key is a number.
_FREE_FORM = frozenset({"metadata"})


def parse_form(raw: bytes | str) -> dict[str, Any]:
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    root: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        _assign(root, _split(key), value, key)
    return _listify(root, None)


def _split(key: str) -> list[str]:
    match = _KEY.match(key)
    if match is None:
        return [key]
    return [match.group(1), *_SEGMENT.findall(match.group(2))]


def _assign(root: dict[str, Any], tokens: list[str], value: str, full_key: str) -> None:
    node = root
    for i, token in enumerate(tokens):
        last = i == len(tokens) - 1
        if token == "":
            # `expand[]=a&expand[]=b`: an append; numbered keys are turned into a list later.
            token = str(len(node))
        if last:
            if isinstance(node.get(token), dict):
                raise StripeError(f"Invalid value for {full_key}.", code="parameter_invalid")
            node[token] = value
            return
        child = node.setdefault(token, {})
        if not isinstance(child, dict):
            raise StripeError(f"Invalid value for {full_key}.", code="parameter_invalid")
        node = child


def _listify(node: Any, key: str | None) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v, k) for k, v in node.items()}
    if key not in _FREE_FORM and converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


# ---- readers ---------------------------------------------------------------------------------


def check_known(params: dict[str, Any], allowed: Iterable[str], prefix: str = "") -> None:
    allowed_set = set(allowed)
    for name in params:
        if name not in allowed_set:
            shown = f"{prefix}[{name}]" if prefix else name
            raise StripeError(
                f"Received unknown parameter: {shown}", code="parameter_unknown", param=shown
            )


def get_str(params: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise missing(name)
        return None
    if not isinstance(value, str):
        raise StripeError(f"Invalid string: {value!r}", code="parameter_invalid_string", param=name)
    return value


def get_int(
    params: dict[str, Any], name: str, *, required: bool = False, minimum: int | None = None
) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise missing(name)
        return None
    try:
        number = int(value) if isinstance(value, str | int) else int("x")
    except ValueError:
        raise StripeError(
            f"Invalid integer: {value}", code="parameter_invalid_integer", param=name
        ) from None
    if minimum is not None and number < minimum:
        raise StripeError(
            f"This value must be greater than or equal to {minimum}.",
            code="parameter_invalid_integer",
            param=name,
        )
    return number


def get_bool(params: dict[str, Any], name: str) -> bool | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if value in ("true", True):
        return True
    if value in ("false", False):
        return False
    raise StripeError(f"Invalid boolean: {value}", code="parameter_invalid", param=name)


def get_dict(params: dict[str, Any], name: str) -> dict[str, Any]:
    value = params.get(name)
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise StripeError(f"Invalid hash: {name}", code="parameter_invalid", param=name)
    return value


def get_currency(params: dict[str, Any], name: str = "currency", required: bool = True) -> str:
    value = get_str(params, name, required=required) or ""
    if value and (len(value) != 3 or not value.isalpha()):
        raise StripeError(f"Invalid currency: {value}", code="parameter_invalid", param=name)
    return value.lower()


def get_metadata(params: dict[str, Any], name: str = "metadata") -> dict[str, str] | None:
    """Validated metadata, or None when absent. Values "" mean "unset this key" on updates."""
    if name not in params:
        return None
    value = params[name]
    if value == "":
        return {}
    if not isinstance(value, dict):
        raise StripeError("Invalid metadata: must be a hash", code="parameter_invalid", param=name)
    if len(value) > 50:
        raise StripeError(
            "Invalid metadata: metadata can have up to 50 keys", code="parameter_invalid"
        )
    for key, item in value.items():
        if len(key) > 40:
            raise StripeError(
                f"Invalid metadata: keys can be up to 40 characters long ({key})",
                code="parameter_invalid",
                param=f"{name}[{key}]",
            )
        if not isinstance(item, str) or len(item) > 500:
            raise StripeError(
                "Invalid metadata: values must be strings of up to 500 characters",
                code="parameter_invalid",
                param=f"{name}[{key}]",
            )
    return dict(value)


def merge_metadata(current: dict[str, str], update: dict[str, str]) -> dict[str, str]:
    merged = dict(current)
    for key, value in update.items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def get_expand(params: dict[str, Any]) -> list[str]:
    value = params.get("expand")
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise StripeError("Invalid array: expand", code="parameter_invalid", param="expand")


def missing(name: str) -> StripeError:
    return StripeError(f"Missing required param: {name}.", code="parameter_missing", param=name)
