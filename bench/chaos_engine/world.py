"""One scratch database and one Stripe emulator for all runs; a fresh world per run.

The emulator runs in-process (a background thread) with no webhook URL: its
events are kept, and the run hands them to the inbox itself (stripe_events.py),
late, twice and out of order. Between runs the tables are truncated (ids
restart) and the emulator reset (it forgets the idempotency keys built from
those ids), so each run is exactly what its seed says.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from connect.service import start_onboarding
from connect.sync import refresh_account
from core.clock import FrozenClock
from core.db import create_engine, session_factory
from core.settings import Settings, load_settings
from core.stripe_gateway import StripeGateway
from core.users import provision_user
from emulator.server import EmulatorServer
from migrations.runner import upgrade
from sessions.catalog import create_session

Factory = async_sessionmaker[AsyncSession]
MAX_RETRIES = (0, 1, 2)


@dataclass
class Env:
    """What outlives a run: the database engine, the emulator, one gateway per retry budget."""

    url: str
    engine: AsyncEngine
    factory: Factory
    emulator: EmulatorServer
    gateways: dict[int, StripeGateway]
    wipe: str  # SQL emptying every table and restarting every sequence
    epoch: datetime = field(default_factory=lambda: next_monday_noon())

    @classmethod
    async def open(cls, db_url: str) -> Env:
        await asyncio.to_thread(upgrade, db_url)  # alembic runs its own event loop
        engine = create_engine(db_url, pool_size=6)
        emulator = EmulatorServer(seed=0).start()
        gateways = {
            n: StripeGateway(
                "sk_test_chaos",
                api_base=emulator.base_url,
                max_retries=n,
                timeout=5.0,
                backoff_base=0.0,
            )
            for n in MAX_RETRIES
        }
        async with engine.connect() as conn:
            names = (
                await conn.execute(
                    text(
                        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                        "AND tablename <> 'alembic_version'"
                    )
                )
            ).scalars()
            tables = list(names)
            seqs = (
                await conn.execute(
                    text("SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'")
                )
            ).scalars()
            # Ids restart too, so a run is the same whatever ran before it.
            wipe = "; ".join(
                [f'DELETE FROM "{t}"' for t in tables]
                + [f'ALTER SEQUENCE "{s}" RESTART' for s in seqs]
            )
        return cls(db_url, engine, session_factory(engine), emulator, gateways, wipe)

    async def close(self) -> None:
        for gw in self.gateways.values():
            await gw.aclose()
        await self.engine.dispose()
        self.emulator.stop()

    async def reset(self) -> FrozenClock:
        """Empty tables, a forgetful emulator, both clocks at ``epoch``."""
        async with self.engine.begin() as conn:
            # DELETE, not TRUNCATE (a new file per table: ~10x slower on small
            # tables); as replica, so the append-only and FK triggers stay out of it.
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
            await conn.execute(text(self.wipe))
        self.emulator.control("POST", "reset")
        self.emulator.control("DELETE", "faults")
        # The emulator's clock is the wall clock plus an offset (it checks checkout
        # expiry against it), so it is moved to the epoch rather than ours to now:
        # every run then sees the same weekdays whatever day it runs on.
        ahead = self.epoch.timestamp() - time.time()
        self.emulator.control("POST", "clock/advance", {"seconds": ahead})
        return FrozenClock(self.epoch)

    def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.emulator.control(method, path, body)


@dataclass
class Coach:
    id: int
    account: str
    schedule: str
    minimum: int


@dataclass
class World:
    """One run's population and clocks. ``clock`` is ours; the emulator's moves with it."""

    env: Env
    rng: random.Random
    settings: Settings
    gateway: StripeGateway
    clock: FrozenClock
    coaches: list[Coach] = field(default_factory=list)
    mentees: list[int] = field(default_factory=list)
    sessions: list[int] = field(default_factory=list)

    @property
    def factory(self) -> Factory:
        return self.env.factory

    def advance(self, delta: timedelta) -> None:
        """Time passes for both sides: holds run out, checkouts expire, funds settle."""
        self.clock.advance(delta)
        self.env.control("POST", "clock/advance", {"seconds": int(delta.total_seconds())})


def next_monday_noon() -> datetime:
    """A Monday noon in the future: a week starts on a period boundary for every schedule."""
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    return today + timedelta(days=7 - today.weekday())


def run_settings(env: Env, rng: random.Random) -> Settings:
    return load_settings(
        database_url=env.url,
        stripe_secret_key="sk_test_chaos",
        stripe_api_base=env.emulator.base_url,
        stripe_timeout_seconds=5,
        platform_fee_bps=rng.choice((1000, 2000, 2500)),
        hold_hours=rng.choice((24, 48, 72)),
        job_batch_size=rng.choice((1, 2, 50)),  # tiny batches exercise the paging too
        db_pool_size=5,
        checkout_expiry_minutes=30,
        run_jobs=False,
    )


async def populate(world: World, *, coaches: int, mentees: int, sessions: int) -> None:
    """Onboarded coaches (schedules, minimums), mentees, published sessions. No faults yet."""
    rng, env, now = world.rng, world.env, world.clock.now()
    async with world.factory() as db, db.begin():
        for i in range(coaches):
            user = await provision_user(db, sub=f"coach-{i}", role="coach", now=now)
            link = await start_onboarding(
                db, coach_id=user.id, gateway=world.gateway, settings=world.settings, now=now
            )
            env.control("POST", f"accounts/{link.stripe_account_id}/complete_onboarding")
            await refresh_account(
                db, stripe_account_id=link.stripe_account_id, gateway=world.gateway, now=now
            )
            schedule = rng.choice(("instant", "instant", "daily"))
            minimum = rng.choice((0, 0, 2000))
            await db.execute(
                text(
                    "UPDATE coach_profiles SET payout_schedule = :s, hold_hours = :h, "
                    "minimum_payout = CAST(:m AS jsonb) WHERE user_id = :u"
                ),
                {
                    "s": schedule,
                    "h": rng.choice((0, 12, 24, 48)),
                    "m": f'{{"usd": {minimum}}}' if minimum else "{}",
                    "u": user.id,
                },
            )
            world.coaches.append(Coach(user.id, link.stripe_account_id, schedule, minimum))
        for i in range(mentees):
            user = await provision_user(db, sub=f"mentee-{i}", role="mentee", now=now)
            world.mentees.append(user.id)
        for i in range(sessions):
            coach = world.coaches[i % len(world.coaches)]
            await publish_session(db, world, coach.id, hours=(4, 96))


async def publish_session(
    db: AsyncSession, world: World, coach_id: int, *, hours: tuple[int, int]
) -> int:
    rng, now = world.rng, world.clock.now()
    starts = now + timedelta(hours=rng.randint(*hours), minutes=rng.choice((0, 30)))
    currency = "jpy" if rng.random() < 0.2 else "usd"
    price = rng.randint(5, 300) * (10 if currency == "jpy" else 100) + rng.randint(0, 99)
    row = await create_session(
        db,
        coach_id=coach_id,
        title=f"session by {coach_id}",
        starts_at=starts,
        ends_at=starts + timedelta(hours=1),
        price=price,
        currency=currency,
        capacity=rng.choice((1, 2, 3, None)),
        refund_window_hours=rng.choice((0, 24)),
        clock=world.clock,
    )
    world.sessions.append(row.id)
    return row.id
