"""People who use coachpay, provisioned on first sight of their identity.

A person is the pair (issuer, subject): ``coachpay`` for the tokens we mint,
the identity provider's ``iss`` for its tokens. Their role is fixed when they
are first seen: a later token claiming another role is refused
(``RoleMismatch``), so nobody turns a mentee's subject into a coach or an
admin by minting or mapping another role; changing a role is ``change_role``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import String, Text, UniqueConstraint, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from core import audit
from core.db import Base
from core.errors import Forbidden, InvalidInput, NotFound


class Role(StrEnum):
    MENTEE = "mentee"
    COACH = "coach"
    FINANCE = "finance"
    ADMIN = "admin"


ROLES = frozenset(r.value for r in Role)
MAX_SUB_LENGTH = 255
MAX_ISSUER_LENGTH = 255
OWN_ISSUER = "coachpay"  # the issuer of the HS256 tokens coachpay mints
# last_seen_at is a hint for people, not an audit trail: refreshing it at
# most this often keeps a busy user's requests from all writing the row.
LAST_SEEN_GRANULARITY = timedelta(minutes=5)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("issuer", "sub", name="uq_users_issuer_sub"),
        UniqueConstraint("stripe_customer_id", name="uq_users_stripe_customer_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    issuer: Mapped[str] = mapped_column(String(MAX_ISSUER_LENGTH), default=OWN_ISSUER)
    sub: Mapped[str] = mapped_column(String(MAX_SUB_LENGTH))
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


class RoleMismatch(Forbidden):
    """A token claims another role than the one its user was provisioned with."""


# The role is never updated here: on a conflict the stored role stays and the
# caller compares it (RETURNING role).
_UPSERT = text(
    """
    INSERT INTO users (issuer, sub, role, email, created_at, last_seen_at)
    VALUES (:issuer, :sub, :role, :email, :now, :now)
    ON CONFLICT (issuer, sub) DO UPDATE
        SET email = COALESCE(EXCLUDED.email, users.email),
            last_seen_at = GREATEST(users.last_seen_at, EXCLUDED.last_seen_at)
    RETURNING id
    """
)


async def find_user(db: AsyncSession, *, issuer: str, sub: str) -> User | None:
    query = select(User).where(User.issuer == issuer, User.sub == sub)
    return (await db.execute(query)).scalar_one_or_none()


async def provision_user(
    db: AsyncSession,
    *,
    sub: str,
    role: str,
    email: str | None = None,
    now: datetime,
    issuer: str = OWN_ISSUER,
) -> User:
    """The user (issuer, sub), created with ``role`` on first sight.

    A known user keeps the role they were created with: a token claiming
    another is ``RoleMismatch`` (403). Concurrent first sights make one row
    (INSERT ... ON CONFLICT); of two racing first sights with different
    roles, the loser is refused. The common case (known user, same role,
    seen recently) is a read only; the write path locks the row until the
    caller commits, so callers should provision in a short transaction.
    """
    validate_sub(sub)
    if not 1 <= len(issuer) <= MAX_ISSUER_LENGTH:
        raise InvalidInput(f"issuer must be 1..{MAX_ISSUER_LENGTH} characters", field="issuer")
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}", field="role")
    user = await find_user(db, issuer=issuer, sub=sub)
    if user is not None and user.role != role:
        raise RoleMismatch(f"this user's role is {user.role}, not {role}")
    if (
        user is not None
        and (email is None or user.email == email)
        and user.last_seen_at > now - LAST_SEEN_GRANULARITY
    ):
        return user
    params = {"issuer": issuer, "sub": sub, "role": role, "email": email, "now": now}
    user_id = (await db.execute(_UPSERT, params)).scalar_one()
    refreshed = await db.get(User, user_id, populate_existing=True)
    assert refreshed is not None
    if refreshed.role != role:
        raise RoleMismatch(f"this user's role is {refreshed.role}, not {role}")
    return refreshed


class UserNotFound(NotFound):
    """No user of that id."""


async def change_role(
    db: AsyncSession, *, user_id: int, role: str, actor_user_id: int, now: datetime
) -> User:
    """An admin's decision (the only way a role changes), audited; flushes. The
    user's next token must claim the new role."""
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}", field="role")
    user = await db.get(User, user_id, with_for_update=True) if 0 < user_id < 2**63 else None
    if user is None:
        raise UserNotFound("no such user")
    before = user.role
    if before != role:
        user.role = role
        await db.flush()
        await audit.record(
            db, actor_kind="user", actor_user_id=actor_user_id, action="user.role_changed",
            entity_type="user", entity_id=user.id, at=now, before={"role": before},
            after={"role": role},
        )  # fmt: skip
    return user


async def get_user(db: AsyncSession, user_id: int) -> User | None:
    return await db.get(User, user_id)
