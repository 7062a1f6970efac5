"""Server-to-server API keys: created and revoked by an admin, stored hashed.

A key is ``cpk_`` + 43 url-safe characters (256 random bits), shown once at
creation. We keep its first ``PREFIX_LENGTH`` characters (to find it and to
show it in lists) and the SHA-256 of the whole key: for a random key of that
strength a slow password hash buys nothing. Each key is scoped to roles; it
authenticates with ``Authorization: Bearer cpk_...`` only, never as a cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ARRAY, BigInteger, ForeignKey, LargeBinary, String, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from core import audit
from core.db import Base
from core.errors import InvalidInput, NotFound
from core.users import ROLES

KEY_MARK = "cpk_"
PREFIX_LENGTH = 12  # "cpk_" + 8 random characters
MAX_KEY_LENGTH = 100
MAX_NAME_LENGTH = 100
# last_used_at is a hint: written at most this often per key, so a busy
# backend's requests are reads.
LAST_USED_GRANULARITY = timedelta(minutes=1)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[bytes] = mapped_column(LargeBinary)
    roles: Mapped[list[str]] = mapped_column(ARRAY(String(16)))
    created_by: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class ApiKeyNotFound(NotFound):
    """No API key of that id."""


@dataclass(frozen=True, slots=True)
class VerifiedKey:
    id: int
    prefix: str
    roles: frozenset[str]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def looks_like_key(token: str) -> bool:
    return token.startswith(KEY_MARK)


def _check_roles(roles: list[str]) -> list[str]:
    unique = sorted(set(roles))
    if not unique or any(r not in ROLES for r in unique):
        raise InvalidInput(f"roles must be a non-empty subset of {sorted(ROLES)}", field="roles")
    return unique


async def create_key(
    db: AsyncSession, *, name: str, roles: list[str], created_by: int | None, now: datetime
) -> tuple[ApiKey, str]:
    """The stored key and the key itself (the only time it exists in clear); flushes."""
    if not 1 <= len(name.strip()) <= MAX_NAME_LENGTH:
        raise InvalidInput(f"name must be 1..{MAX_NAME_LENGTH} characters", field="name")
    key = KEY_MARK + secrets.token_urlsafe(32)
    row = ApiKey(
        name=name.strip(),
        prefix=key[:PREFIX_LENGTH],
        key_hash=_digest(key),
        roles=_check_roles(roles),
        created_by=created_by,
        created_at=now,
    )
    db.add(row)
    await db.flush()
    await audit.record(
        db, actor_kind="user" if created_by else "system", actor_user_id=created_by,
        action="api_key.created", entity_type="api_key", entity_id=row.id, at=now,
        after={"name": row.name, "prefix": row.prefix, "roles": row.roles},
    )  # fmt: skip
    return row, key


async def list_keys(db: AsyncSession) -> list[ApiKey]:
    return list((await db.execute(select(ApiKey).order_by(ApiKey.id))).scalars())


async def revoke_key(
    db: AsyncSession, *, key_id: int, now: datetime, actor_user_id: int | None
) -> ApiKey:
    """Revoked at once and for good; revoking twice keeps the first time. Flushes."""
    row = await db.get(ApiKey, key_id, with_for_update=True)
    if row is None:
        raise ApiKeyNotFound("no such API key")
    if row.revoked_at is None:
        row.revoked_at = now
        await db.flush()
        await audit.record(
            db, actor_kind="user" if actor_user_id else "system", actor_user_id=actor_user_id,
            action="api_key.revoked", entity_type="api_key", entity_id=row.id, at=now,
        )  # fmt: skip
    return row


async def verify_key(db: AsyncSession, key: str, *, now: datetime) -> VerifiedKey | None:
    """The live key ``key`` is, or None. Touches last_used_at (at most once a
    ``LAST_USED_GRANULARITY``); the caller commits."""
    if not looks_like_key(key) or not PREFIX_LENGTH < len(key) <= MAX_KEY_LENGTH:
        return None
    row = (
        await db.execute(select(ApiKey).where(ApiKey.prefix == key[:PREFIX_LENGTH]))
    ).scalar_one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.key_hash, _digest(key)):
        return None
    if row.last_used_at is None or row.last_used_at < now - LAST_USED_GRANULARITY:
        await db.execute(
            update(ApiKey)
            .where(ApiKey.id == row.id)
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )
    return VerifiedKey(id=row.id, prefix=row.prefix, roles=frozenset(row.roles))
