"""Fixtures for the outbox: a committing database, a frozen clock, a live receiver."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.clock import FrozenClock
from core.db import session_factory
from core.outbox.delivery import DeliveryConfig
from core.outbox.endpoints import Guard
from tests.outbox.receiver import Receiver

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
LOCAL = (ipaddress.ip_network("127.0.0.1/32"),)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def factory(clean_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(clean_engine)


@pytest.fixture
def guard() -> Guard:
    return Guard(allowed=LOCAL)


@pytest.fixture
def config() -> DeliveryConfig:
    return DeliveryConfig(allowed=LOCAL, timeout=5.0)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()
