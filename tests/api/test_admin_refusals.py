"""The admin's view of a coach whose transfers Stripe refuses: the count in a row, the next
attempt, who paused and why; resuming (route or PATCH) starts afresh."""

from __future__ import annotations

from datetime import timedelta

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.clock import FrozenClock
from tests.api.conftest import Tokens
from tests.api.test_admin_coaches import coach_id

Client = AsyncTestClient[Litestar]


async def _refused(engine: AsyncEngine, coach: int, clock: FrozenClock, *, paused: bool) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE coach_profiles SET payout_refusals = 3, payout_retry_at = :at, "
                "payout_last_refusal = 'account cannot receive transfers', "
                "payouts_paused = :p, payouts_paused_reason = CASE WHEN :p THEN "
                "'Stripe refused 3 transfers in a row: account cannot receive transfers' END, "
                "payouts_paused_by = CASE WHEN :p THEN 'transfer_refusals' END "
                "WHERE user_id = :c"
            ),
            {"c": coach, "at": clock.now() + timedelta(hours=4), "p": paused},
        )


async def _profile(client: Client, tokens: Tokens, coach: int) -> dict[str, object]:
    r = await client.get(f"/v1/admin/coaches/{coach}", headers=tokens.headers("admin"))
    assert r.status_code == 200, r.text
    profile: dict[str, object] = r.json()["profile"]
    return profile


async def test_admin_sees_the_refusals_and_resume_clears_them(
    app_client: Client, tokens: Tokens, clean_engine: AsyncEngine, api_clock: FrozenClock
) -> None:
    coach = await coach_id(app_client, tokens, "coach-refused")
    admin = tokens.headers("admin")
    await app_client.patch(f"/v1/admin/coaches/{coach}", headers=admin, json={"fee_bps": 1000})
    await _refused(clean_engine, coach, api_clock, paused=True)
    profile = await _profile(app_client, tokens, coach)
    assert profile["payout_refusals"] == 3 and profile["payouts_paused_by"] == "transfer_refusals"
    assert profile["next_payout_attempt_at"] and profile["last_payout_refusal"]
    assert "refused 3 transfers" in str(profile["payouts_paused_reason"])
    r = await app_client.post(f"/v1/admin/coaches/{coach}/payouts/resume", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["payout_refusals"] == 0 and r.json()["next_payout_attempt_at"] is None
    assert r.json()["payouts_paused_by"] is None and r.json()["payouts_paused"] is False
    profile = await _profile(app_client, tokens, coach)
    assert profile["last_payout_refusal"] is None


async def test_patch_pauses_as_an_admin_and_unpausing_clears_the_backoff(
    app_client: Client, tokens: Tokens, clean_engine: AsyncEngine, api_clock: FrozenClock
) -> None:
    coach = await coach_id(app_client, tokens, "coach-patched")
    admin = tokens.headers("admin")
    body = {"payouts_paused": True, "payouts_paused_reason": "identity check"}
    r = await app_client.patch(f"/v1/admin/coaches/{coach}", headers=admin, json=body)
    assert r.json()["profile"]["payouts_paused_by"] == "admin"
    await _refused(clean_engine, coach, api_clock, paused=True)
    r = await app_client.patch(
        f"/v1/admin/coaches/{coach}", headers=admin, json={"payouts_paused": False}
    )
    profile = r.json()["profile"]
    assert (profile["payout_refusals"], profile["next_payout_attempt_at"]) == (0, None)
    assert profile["payouts_paused_by"] is None
    # Backing off without a pause: shown, and a PATCH of something else keeps it.
    await _refused(clean_engine, coach, api_clock, paused=False)
    r = await app_client.patch(f"/v1/admin/coaches/{coach}", headers=admin, json={"fee_bps": 900})
    assert r.json()["profile"]["payout_refusals"] == 3
