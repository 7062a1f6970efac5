from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.clock import FrozenClock
from core.db import session_factory
from core.settings import Settings
from tests.payouts.helpers import T0, FakeStripe


@pytest.fixture
def factory(clean_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(clean_engine)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def settings() -> Settings:
    return Settings(job_batch_size=50, db_pool_size=5, stripe_secret_key=None)


@pytest.fixture
def stripe() -> FakeStripe:
    return FakeStripe()


@pytest.fixture
async def tx(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A committing session for setting up rows that the jobs then see."""
    async with factory() as db:
        yield db
