"""Stripe API resources: one module per resource family, each exporting `register(router)`."""
