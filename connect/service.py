"""Coach onboarding on Stripe Connect: the functions the API, jobs and webhooks call.

Every function takes the session and flushes; the caller commits. Functions
that talk to Stripe take a ``core.stripe_gateway.StripeGateway``.

Concurrency: onboarding locks the coach's profile row (SELECT ... FOR UPDATE)
before it looks for an account, so two concurrent calls create one Connect
account; the Stripe call also carries the key ``coachpay:connect-account:<coach
id>``, so a crash between Stripe's answer and our commit replays the same
account on the next attempt instead of creating a second one. Syncing locks the
account row *before* retrieving it from Stripe, so the last writer always holds
the freshest state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import quote

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from connect.errors import AccountDisabled, CoachNotFound, ConnectAccountNotFound, NotACoach
from connect.links import sign_link_token, verify_link_token
from connect.models import CoachProfile, ConnectAccount
from connect.profile import PayoutEligibility, get_profile, payout_eligibility, update_profile
from connect.status import derive_status
from connect.sync import SyncResult, apply_stripe_state, refresh_account, sync_account
from core import audit
from core.audit import AuditEntry
from core.stripe_errors import StripeOutcomeUnknown, StripeRefused
from core.stripe_gateway import idempotency_key
from core.users import Role, get_user

if TYPE_CHECKING:
    from core.settings import Settings
    from core.stripe_gateway import StripeGateway
    from core.stripe_types import StripeAccount

__all__ = [
    "AccountView",
    "OnboardingLink",
    "PayoutEligibility",
    "SyncResult",
    "account_for_coach",
    "derive_status",
    "ensure_profile",
    "get_account_view",
    "get_profile",
    "payout_eligibility",
    "refresh_account",
    "start_onboarding",
    "sync_account",
    "update_profile",
]

log = logging.getLogger(__name__)

DEFAULT_COUNTRY = "US"
REFRESH_PATH = "/v1/coaches/me/onboarding/refresh"
RETURN_PATH = "/v1/coaches/me/onboarding/return"


@dataclass(frozen=True, slots=True)
class OnboardingLink:
    url: str
    expires_at: int
    stripe_account_id: str
    status: str
    account_created: bool


@dataclass(frozen=True, slots=True)
class AccountView:
    """What the coach sees: ``status`` is ``not_started`` before the first onboarding call."""

    coach_id: int
    status: str
    stripe_account_id: str | None = None
    country: str | None = None
    default_currency: str | None = None
    charges_enabled: bool = False
    payouts_enabled: bool = False
    details_submitted: bool = False
    transfers_capability: str | None = None
    requirements_currently_due: tuple[str, ...] = ()
    requirements_past_due: tuple[str, ...] = ()
    requirements_eventually_due: tuple[str, ...] = ()
    disabled_reason: str | None = None
    dashboard_url: str | None = None


# -- profiles ----------------------------------------------------------------


async def ensure_profile(
    db: AsyncSession, *, user_id: int, settings: Settings, now: datetime
) -> CoachProfile:
    """The coach's profile, created with the platform defaults on first use.

    Concurrent first calls make one row (INSERT ... ON CONFLICT DO NOTHING).
    Raises CoachNotFound for an unknown user and NotACoach for any other role.
    """
    user = await get_user(db, user_id)
    if user is None:
        raise CoachNotFound(f"no user {user_id}")
    if user.role != Role.COACH:
        raise NotACoach("only coaches have a coach profile")
    await db.execute(
        pg_insert(CoachProfile)
        .values(
            user_id=user_id,
            display_name=user.display_name,
            fee_bps=settings.platform_fee_bps,
            hold_hours=settings.hold_hours,
            payout_schedule="daily",
            minimum_payout={},
            payouts_paused=False,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["user_id"])
    )
    profile = await get_profile(db, user_id)
    assert profile is not None
    return profile


# -- accounts ----------------------------------------------------------------


async def account_for_coach(
    db: AsyncSession, coach_id: int, *, for_update: bool = False
) -> ConnectAccount | None:
    stmt = select(ConnectAccount).where(ConnectAccount.coach_id == coach_id)
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return (await db.execute(stmt)).scalar_one_or_none()


def _link_urls(settings: Settings, coach_id: int, now: datetime) -> tuple[str, str]:
    token = quote(sign_link_token(coach_id, secret=_secret(settings), now=now), safe="")
    base = settings.public_url.rstrip("/")
    return f"{base}{REFRESH_PATH}?token={token}", f"{base}{RETURN_PATH}?token={token}"


def _secret(settings: Settings) -> str:
    return settings.jwt_secret.get_secret_value()


# Stripe keeps an idempotency key for 24 h; past this, our key may no longer
# replay an account Stripe made for a request whose commit we lost.
IDEMPOTENCY_WINDOW = timedelta(hours=23)
REQUESTED = "connect_account.requested"


async def note_account_request(db: AsyncSession, *, coach_id: int, now: datetime) -> bool:
    """Record, before Stripe is called, that this coach's account is about to be created.

    The caller commits it on its own, first: if Stripe then creates the account
    and our transaction is lost, a retry after the idempotency window knows to
    look for that account instead of creating a second one. Once per coach.
    """
    if await account_for_coach(db, coach_id) is not None or await _first_request(db, coach_id):
        return False
    await audit.record(
        db, actor_kind="user", actor_user_id=coach_id, action=REQUESTED,
        entity_type="coach", entity_id=coach_id, at=now,
    )  # fmt: skip
    return True


async def _first_request(db: AsyncSession, coach_id: int) -> datetime | None:
    stmt = select(func.min(AuditEntry.at)).where(
        AuditEntry.action == REQUESTED,
        AuditEntry.entity_type == "coach",
        AuditEntry.entity_id == str(coach_id),
    )
    return (await db.execute(stmt)).scalar_one_or_none()


async def _create_account(
    db: AsyncSession, *, coach_id: int, gateway: StripeGateway, now: datetime, country: str
) -> StripeAccount:
    first = await _first_request(db, coach_id)
    if first is not None and now - first > IDEMPOTENCY_WINDOW:
        found = await gateway.find_account_by_metadata(key="coach_id", value=str(coach_id))
        if found is not None:
            log.warning("coach %s: adopted Connect account %s made earlier", coach_id, found.id)
            return found
    user = await get_user(db, coach_id)
    acct = await gateway.create_account(
        email=user.email if user else None,
        country=country,
        metadata={"coach_id": str(coach_id)},
        idempotency_key=idempotency_key("connect-account", coach_id),
    )
    return acct


async def start_onboarding(
    db: AsyncSession,
    *,
    coach_id: int,
    gateway: StripeGateway,
    settings: Settings,
    now: datetime,
    country: str | None = None,
) -> OnboardingLink:
    """Create the coach's Connect account once, and return a fresh onboarding link.

    Safe to call any number of times and concurrently (see the module doc).
    The profile row stays locked until the caller commits.
    """
    await ensure_profile(db, user_id=coach_id, settings=settings, now=now)
    await db.execute(
        select(CoachProfile.user_id).where(CoachProfile.user_id == coach_id).with_for_update()
    )
    row = await account_for_coach(db, coach_id, for_update=True)
    created = row is None
    if row is None:
        acct = await _create_account(
            db, coach_id=coach_id, gateway=gateway, now=now, country=country or DEFAULT_COUNTRY
        )
        row = ConnectAccount(
            coach_id=coach_id, stripe_account_id=acct.id, created_at=now, updated_at=now
        )
        apply_stripe_state(row, acct)
        row.synced_at = now
        db.add(row)
        await db.flush()
        await audit.record(
            db,
            actor_kind="user",
            actor_user_id=coach_id,
            action="connect_account.created",
            entity_type="connect_account",
            entity_id=row.id,
            at=now,
            after={"stripe_account_id": acct.id, "status": row.status},
        )
    if row.status == "disabled":
        raise AccountDisabled(f"Stripe disabled this account ({row.disabled_reason})")
    refresh_url, return_url = _link_urls(settings, coach_id, now)
    link = await gateway.create_account_link(
        account_id=row.stripe_account_id, refresh_url=refresh_url, return_url=return_url
    )
    return OnboardingLink(
        url=link.url,
        expires_at=link.expires_at,
        stripe_account_id=row.stripe_account_id,
        status=row.status,
        account_created=created,
    )


async def refresh_onboarding(
    db: AsyncSession,
    *,
    token: str | None,
    gateway: StripeGateway,
    settings: Settings,
    now: datetime,
) -> OnboardingLink:
    """Stripe sent the coach back to ``refresh_url`` (link expired or reused): a new link."""
    coach_id = verify_link_token(token, secret=_secret(settings), now=now)
    return await start_onboarding(
        db, coach_id=coach_id, gateway=gateway, settings=settings, now=now
    )


async def complete_return(
    db: AsyncSession,
    *,
    token: str | None,
    gateway: StripeGateway,
    settings: Settings,
    now: datetime,
) -> AccountView:
    """The coach is back on ``return_url``: re-read the account now (the webhook may
    lag behind the browser) and show where it stands."""
    coach_id = verify_link_token(token, secret=_secret(settings), now=now)
    row = await account_for_coach(db, coach_id)
    if row is None:
        raise ConnectAccountNotFound("onboarding has not been started")
    await refresh_account(db, stripe_account_id=row.stripe_account_id, gateway=gateway, now=now)
    return await get_account_view(db, coach_id=coach_id, gateway=gateway)


async def get_account_view(
    db: AsyncSession, *, coach_id: int, gateway: StripeGateway | None
) -> AccountView:
    """The coach's account as we last synced it, with an Express dashboard link when active."""
    row = await account_for_coach(db, coach_id)
    if row is None:
        return AccountView(coach_id=coach_id, status="not_started")
    dashboard_url = None
    if row.status == "active" and gateway is not None:
        try:
            dashboard_url = (await gateway.create_login_link(row.stripe_account_id)).url
        except (StripeRefused, StripeOutcomeUnknown) as exc:
            # The status is ours and still worth showing; the link is a convenience
            # the coach can ask for again.
            log.warning("login link for %s failed: %s", row.stripe_account_id, exc)
    return AccountView(
        coach_id=coach_id,
        status=row.status,
        stripe_account_id=row.stripe_account_id,
        country=row.country,
        default_currency=row.default_currency,
        charges_enabled=row.charges_enabled,
        payouts_enabled=row.payouts_enabled,
        details_submitted=row.details_submitted,
        transfers_capability=row.transfers_capability,
        requirements_currently_due=tuple(row.requirements_currently_due),
        requirements_past_due=tuple(row.requirements_past_due),
        requirements_eventually_due=tuple(row.requirements_eventually_due),
        disabled_reason=row.disabled_reason,
        dashboard_url=dashboard_url,
    )
