"""PATCH/GET /v1/admin/coaches/{id}: validated, audited, admin only."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from connect.models import CoachProfile
from core.audit import AuditEntry
from core.users import User
from tests.api.conftest import Tokens

Client = AsyncTestClient[Litestar]


async def coach_id(client: Client, tokens: Tokens, sub: str) -> int:
    """Provision the coach ``sub`` by one request and return their user id."""
    resp = await client.get("/v1/coaches/me/account", headers=tokens.headers("coach", sub))
    return int(resp.json()["coach_id"])


async def profile_row(engine: AsyncEngine, coach: int) -> CoachProfile | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(CoachProfile.__table__).where(CoachProfile.user_id == coach))
        ).first()
    return row  # type: ignore[return-value]


async def audit_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        stmt = select(func.count()).where(AuditEntry.action == "coach_profile.updated")
        return int(await conn.scalar(stmt) or 0)


async def test_admin_reads_defaults_then_patches_and_reads_back(
    app_client: Client, tokens: Tokens, clean_engine: AsyncEngine
) -> None:
    coach = await coach_id(app_client, tokens, "coach-x")
    admin = tokens.headers("admin")
    got = await app_client.get(f"/v1/admin/coaches/{coach}", headers=admin)
    assert got.status_code == 200
    assert got.json()["profile"]["fee_bps"] == 2000
    assert got.json()["profile"]["hold_hours"] == 72
    assert got.json()["account"]["status"] == "not_started"

    body = {
        "fee_bps": 1500,
        "hold_hours": 0,
        "payout_schedule": "monthly",
        "minimum_payout": {"usd": 2500, "eur": 1000},
        "payouts_paused": True,
        "payouts_paused_reason": "identity check",
    }
    resp = await app_client.patch(f"/v1/admin/coaches/{coach}", headers=admin, json=body)
    assert resp.status_code == 200, resp.text
    profile = resp.json()["profile"]
    assert {k: profile[k] for k in body} == body
    again = (await app_client.get(f"/v1/admin/coaches/{coach}", headers=admin)).json()
    assert again["profile"]["minimum_payout"] == {"usd": 2500, "eur": 1000}
    async with clean_engine.connect() as conn:
        entry = (
            await conn.execute(
                select(AuditEntry.actor_user_id, AuditEntry.before, AuditEntry.after).where(
                    AuditEntry.action == "coach_profile.updated"
                )
            )
        ).one()
    assert entry.actor_user_id is not None and entry.actor_user_id != coach
    assert entry.before["fee_bps"] == 2000 and entry.after["fee_bps"] == 1500

    unpause = await app_client.patch(
        f"/v1/admin/coaches/{coach}", headers=admin, json={"payouts_paused": False}
    )
    assert unpause.json()["profile"]["payouts_paused_reason"] is None


BAD: list[Any] = [
    {"fee_bps": -1},
    {"fee_bps": 10_001},
    {"fee_bps": "1500"},
    {"fee_bps": 1.5},
    {"fee_bps": None},
    {"fee_bps": 10**40},
    {"hold_hours": -1},
    {"hold_hours": 2161},
    {"payout_schedule": "hourly"},
    {"payout_schedule": ["daily"]},
    {"minimum_payout": {"usd": -1}},
    {"minimum_payout": {"<script>": 1}},
    {"minimum_payout": 100},
    {"payouts_paused": True},
    {"payouts_paused": "true"},
    {"payouts_paused_reason": "x"},
    {"fee_bps": 1000, "hold_hours": 99999},
    {"fee_bps": 1000, "coach_id": 2},
    {},
    [],
    "fee_bps",
    None,
]


async def test_invalid_values_are_422_and_change_nothing(
    app_client: Client, tokens: Tokens, clean_engine: AsyncEngine
) -> None:
    # One app for all the cases: an app per case would cost a second each.
    coach = await coach_id(app_client, tokens, "coach-y")
    for body in BAD:
        resp = await app_client.patch(
            f"/v1/admin/coaches/{coach}", headers=tokens.headers("admin"), json=body
        )
        assert resp.status_code == 422, (body, resp.text)
        assert resp.json()["error"] in ("InvalidProfileChange", "InvalidInput"), body
    assert await profile_row(clean_engine, coach) is None  # not even the default row
    assert await audit_count(clean_engine) == 0


async def test_invalid_value_on_an_existing_profile_keeps_it(
    app_client: Client, tokens: Tokens, clean_engine: AsyncEngine
) -> None:
    coach = await coach_id(app_client, tokens, "coach-z")
    admin = tokens.headers("admin")
    ok = await app_client.patch(f"/v1/admin/coaches/{coach}", headers=admin, json={"fee_bps": 900})
    assert ok.status_code == 200
    bad = await app_client.patch(
        f"/v1/admin/coaches/{coach}", headers=admin, json={"fee_bps": 800, "hold_hours": -5}
    )
    assert bad.status_code == 422
    row = await profile_row(clean_engine, coach)
    assert row is not None and row.fee_bps == 900 and row.hold_hours == 72
    assert await audit_count(clean_engine) == 1


async def test_malformed_and_oversized_bodies(app_client: Client, tokens: Tokens) -> None:
    coach = await coach_id(app_client, tokens, "coach-m")
    headers = {**tokens.headers("admin"), "Content-Type": "application/json"}
    url = f"/v1/admin/coaches/{coach}"
    assert (await app_client.patch(url, headers=headers, content=b"{")).status_code == 422
    assert (await app_client.patch(url, headers=headers, content=b"\xff\xfe")).status_code == 422
    big = b'{"payouts_paused_reason": "' + b"a" * 20_000 + b'"}'
    assert (await app_client.patch(url, headers=headers, content=big)).status_code == 413


async def test_only_admins(app_client: Client, tokens: Tokens, clean_engine: AsyncEngine) -> None:
    coach = await coach_id(app_client, tokens, "coach-target")
    for role in ("coach", "mentee", "finance"):
        headers = tokens.headers(role, f"{role}-intruder")
        got = await app_client.get(f"/v1/admin/coaches/{coach}", headers=headers)
        assert got.status_code == 403, role
        resp = await app_client.patch(
            f"/v1/admin/coaches/{coach}", headers=headers, json={"fee_bps": 0}
        )
        assert resp.status_code == 403, role
    assert await profile_row(clean_engine, coach) is None


async def test_no_token_is_401(app_client: Client) -> None:
    assert (await app_client.get("/v1/admin/coaches/1")).status_code == 401
    assert (await app_client.patch("/v1/admin/coaches/1", json={"fee_bps": 1})).status_code == 401


async def test_unknown_malformed_and_non_coach_ids_are_4xx(
    app_client: Client, tokens: Tokens, clean_engine: AsyncEngine
) -> None:
    admin = tokens.headers("admin")
    await app_client.get("/v1/coaches/me/account", headers=tokens.headers("mentee", "m-1"))
    async with clean_engine.connect() as conn:
        mentee = await conn.scalar(select(User.id).where(User.sub == "m-1"))
    for path_id in ["999999", "0", "-1", "99999999999999999999", "abc", "1.5", str(mentee)]:
        got = await app_client.get(f"/v1/admin/coaches/{path_id}", headers=admin)
        patched = await app_client.patch(
            f"/v1/admin/coaches/{path_id}", headers=admin, json={"fee_bps": 1}
        )
        assert got.status_code in (400, 404), (path_id, got.text)
        assert patched.status_code in (400, 404), (path_id, patched.text)
    got = await app_client.get(f"/v1/admin/coaches/{mentee}", headers=admin)
    assert got.status_code == 404
    assert await audit_count(clean_engine) == 0
