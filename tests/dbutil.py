"""Test databases: the server from COACHPAY_TEST_DATABASE_URL, or an embedded one."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from core.embedded import embedded_database_url

ROOT = Path(__file__).resolve().parent.parent


def server_url() -> str:
    url = os.environ.get("COACHPAY_TEST_DATABASE_URL")
    if url:
        return url
    return embedded_database_url(ROOT / ".pytest-pg", database="postgres")


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def _sync(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def create_database(url: str, name: str) -> str:
    with psycopg.connect(_sync(with_database(url, "postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(url, name)


def drop_database(url: str, name: str) -> None:
    with psycopg.connect(_sync(with_database(url, "postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
