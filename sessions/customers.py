"""A Stripe Customer per mentee, so Checkout offers a returning mentee their saved card.

The user row is the intent: the Customer's idempotency key is derived from
the user id (``coachpay:customer:<user id>``), so a retry after a lost answer,
or two first bookings at once, get the same Customer from Stripe instead of
two. No lock is held across the call; the id is stored with a
compare-and-set (only while still empty), so the first stored id wins.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.stripe_gateway import StripeGateway, idempotency_key
from core.users import User


def customer_key(user_id: int) -> str:
    return idempotency_key("customer", user_id)


async def ensure_customer(db: AsyncSession, *, user_id: int, gateway: StripeGateway) -> str:
    """The user's Stripe Customer id, created at Stripe on first need. Flushes; the caller
    commits (the row's lock from the UPDATE is held only until then)."""
    stored, email = (
        await db.execute(select(User.stripe_customer_id, User.email).where(User.id == user_id))
    ).one()
    if stored:
        return str(stored)
    customer = await gateway.create_customer(
        email=email,
        metadata={"user_id": str(user_id)},
        idempotency_key=customer_key(user_id),
    )
    await db.execute(
        update(User)
        .where(User.id == user_id, User.stripe_customer_id.is_(None))
        .values(stripe_customer_id=customer.id)
        .execution_options(synchronize_session=False)
    )
    # Another request may have stored one first (the same one, from the same key).
    final = (
        await db.execute(
            select(User.stripe_customer_id)
            .where(User.id == user_id)
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    assert final is not None
    return final
