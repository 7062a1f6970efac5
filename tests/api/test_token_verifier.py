"""api.auth.TokenVerifier: the memo of verified tokens never accepts what decode_token refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from api import auth
from api.auth import AuthenticationFailed, TokenVerifier, mint_token
from core.settings import Settings, load_settings
from core.users import Role
from tests.api.conftest import TEST_JWT_SECRET

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture
def settings() -> Settings:
    return load_settings(jwt_secret=TEST_JWT_SECRET, database_url="postgresql://unused/x")


class Clock:
    def __init__(self) -> None:
        self.t = T0.timestamp()

    def __call__(self) -> float:
        return self.t


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = jwt.decode

    def counting(token: str, *a: object, **kw: object) -> object:
        seen.append(token)
        return real(token, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(auth.jwt, "decode", counting)
    return seen


def test_a_token_is_verified_once_then_served_from_the_memo(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    decodes = _count_decodes(monkeypatch)
    tv = TokenVerifier(settings)
    token = mint_token(settings, "coach-1", Role.COACH, email="c@example.com")
    first = tv.verify(token)
    assert tv.verify(token) == first == auth.Claims("coach-1", Role.COACH, "c@example.com")
    assert decodes == [token] and len(tv) == 1


def test_a_remembered_token_still_expires(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    tv = TokenVerifier(settings, now=clock)
    # Minted for "now", a minute long: valid for PyJWT's real clock too.
    token = mint_token(settings, "coach-1", Role.COACH, timedelta(minutes=1))
    tv.verify(token)
    clock.t = datetime.now(UTC).timestamp() + 60 + auth.LEEWAY_SECONDS - 0.5
    assert tv.verify(token).sub == "coach-1"  # within exp + leeway
    clock.t += 1
    # Past exp + leeway by the memo's clock: dropped and decoded again. PyJWT's
    # clock is real time here, where the token is still valid: so move it too.
    later = datetime.now(UTC) + timedelta(minutes=2)
    monkeypatch.setattr(jwt.api_jwt, "datetime", _FrozenDatetime(later))
    with pytest.raises(AuthenticationFailed, match="expired"):
        tv.verify(token)
    assert len(tv) == 0


class _FrozenDatetime:
    """Stands in for ``datetime`` inside PyJWT: ``now()`` answers a fixed instant."""

    def __init__(self, at: datetime) -> None:
        self._at = at

    def now(self, tz: object = None) -> datetime:
        return self._at

    def __getattr__(self, name: str) -> object:
        return getattr(datetime, name)


@pytest.mark.parametrize(
    "make",
    [
        lambda s: mint_token(s, "x", Role.COACH, timedelta(seconds=-60)),  # expired
        lambda s: jwt.encode({"sub": "x", "role": "coach", "exp": 2**40}, "another-secret-" * 4),
        lambda s: jwt.encode({"sub": "x", "role": "king", "exp": 2**40}, TEST_JWT_SECRET),
        lambda s: "not.a.token",
    ],
    ids=["expired", "other-secret", "unknown-role", "malformed"],
)
def test_refused_tokens_are_refused_every_time_and_never_kept(
    settings: Settings, make: object
) -> None:
    tv = TokenVerifier(settings)
    token = make(settings)  # type: ignore[operator]
    for _ in range(2):
        with pytest.raises(AuthenticationFailed):
            tv.verify(token)
    assert len(tv) == 0


def test_a_token_differing_only_in_its_signature_misses_the_memo(settings: Settings) -> None:
    tv = TokenVerifier(settings)
    token = mint_token(settings, "coach-1", Role.COACH)
    tv.verify(token)
    head, body, sig = token.split(".")
    forged = f"{head}.{body}.{sig[:-2]}{'AA' if sig[-2:] != 'AA' else 'BB'}"
    with pytest.raises(AuthenticationFailed):
        tv.verify(forged)


def test_the_memo_is_bounded_oldest_first(settings: Settings) -> None:
    tv = TokenVerifier(settings, max_entries=3)
    tokens = [mint_token(settings, f"c{i}", Role.COACH) for i in range(5)]
    for t in tokens:
        tv.verify(t)
    assert len(tv) == 3
    assert set(tv._memo) == set(tokens[2:])
