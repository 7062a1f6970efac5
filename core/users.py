"""People who use coachpay, provisioned on first sight of their identity (``sub``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import String, Text, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base
from core.errors import InvalidInput


class Role(StrEnum):
    MENTEE = "mentee"
    COACH = "coach"
    FINANCE = "finance"
    ADMIN = "admin"


ROLES = frozenset(r.value for r in Role)
MAX_SUB_LENGTH = 255
# last_seen_at is a hint for people, not an audit trail: refreshing it at
# most this often keeps a busy user's requests from all writing the row.
LAST_SEEN_GRANULARITY = timedelta(minutes=5)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    sub: Mapped[str] = mapped_column(String(MAX_SUB_LENGTH), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    email: Mapped[str | None] = mapped_column(Text)
    display_name: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column()
    last_seen_at: Mapped[datetime] = mapped_column()
    # The mentee's Stripe Customer (migration 0008), created on their first booking.
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255))


def validate_sub(sub: str) -> str:
    if not isinstance(sub, str) or not 1 <= len(sub) <= MAX_SUB_LENGTH:
        raise InvalidInput(f"sub must be 1..{MAX_SUB_LENGTH} characters", field="sub")
    if any(ord(c) < 32 or ord(c) == 127 for c in sub):
        raise InvalidInput("sub must not contain control characters", field="sub")
    return sub


_UPSERT = text(
    """
    INSERT INTO users (sub, role, email, created_at, last_seen_at)
    VALUES (:sub, :role, :email, :now, :now)
    ON CONFLICT (sub) DO UPDATE
        SET role = EXCLUDED.role,
            email = COALESCE(EXCLUDED.email, users.email),
            last_seen_at = GREATEST(users.last_seen_at, EXCLUDED.last_seen_at)
    RETURNING id
    """
)


async def provision_user(
    db: AsyncSession, *, sub: str, role: str, email: str | None = None, now: datetime
) -> User:
    """The user behind ``sub``, created on first sight.

    The role comes from the identity provider's token, so the stored role
    follows it. Concurrent first sights make one row (INSERT ... ON
    CONFLICT). The common case (known user, same role, seen recently) is a
    read only; the write path locks the row until the caller commits, so
    callers should provision in a short transaction of its own.
    """
    validate_sub(sub)
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}", field="role")
    user = (await db.execute(select(User).where(User.sub == sub))).scalar_one_or_none()
    if (
        user is not None
        and user.role == role
        and (email is None or user.email == email)
        and user.last_seen_at > now - LAST_SEEN_GRANULARITY
    ):
        return user
    user_id = (
        await db.execute(_UPSERT, {"sub": sub, "role": role, "email": email, "now": now})
    ).scalar_one()
    refreshed = await db.get(User, user_id, populate_existing=True)
    assert refreshed is not None
    return refreshed


async def get_user(db: AsyncSession, user_id: int) -> User | None:
    return await db.get(User, user_id)
