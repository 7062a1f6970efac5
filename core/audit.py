"""An append-only trail of who changed what, and why (people, Stripe, jobs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

import core.users  # noqa: F401  (actor_user_id's foreign key names users)
from core.db import Base

ActorKind = Literal["user", "stripe", "system"]
ACTOR_KINDS = ("user", "stripe", "system")


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_entity", "entity_type", "entity_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column()
    actor_user_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))
    actor_kind: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str] = mapped_column(String(255))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    cause: Mapped[str | None] = mapped_column(Text)


async def record(
    db: AsyncSession,
    *,
    actor_kind: ActorKind,
    action: str,
    entity_type: str,
    entity_id: object,
    at: datetime,
    actor_user_id: int | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    cause: str | None = None,
) -> AuditEntry:
    """Add one entry in the caller's transaction, so it commits with the change it describes.

    ``cause`` says why: a Stripe event id, a job name, a request id.
    """
    if actor_kind not in ACTOR_KINDS:
        raise ValueError(f"actor_kind must be one of {ACTOR_KINDS}")
    if actor_kind == "user" and actor_user_id is None:
        raise ValueError("a user action needs actor_user_id")
    entry = AuditEntry(
        at=at,
        actor_user_id=actor_user_id,
        actor_kind=actor_kind,
        action=action,
        entity_type=entity_type,
        entity_id=str(entity_id),
        before=before,
        after=after,
        cause=cause,
    )
    db.add(entry)
    await db.flush()
    return entry
