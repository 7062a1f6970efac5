"""Stripe webhook handlers of the `sessions` package (filled in by its owner)."""

from __future__ import annotations

from core.inbox import HandlerRegistry


def register_handlers(registry: HandlerRegistry) -> None:
    """Register this package's handlers: `registry.register("event.type", handler)`."""
