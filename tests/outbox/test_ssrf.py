"""Where webhooks may go: only public addresses, unless the deployment's allow list says more."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import ConfigurationError
from core.outbox import ssrf
from core.outbox.endpoints import Guard, create_endpoint

NOW = datetime(2026, 12, 1, tzinfo=UTC)
BLOCKED = [
    "127.0.0.1", "127.8.9.10", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
    "100.64.0.1", "0.0.0.0", "224.0.0.251", "255.255.255.255", "192.0.2.10", "198.18.0.1",
    "240.0.0.1", "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "2002:a00:1::1",
    "64:ff9b::a00:1", "2001:db8::1", "fe80::1%eth0",
]  # fmt: skip
PUBLIC = ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", BLOCKED)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert ssrf.refusal(address) is not None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert ssrf.refusal(address) is None


def test_the_allow_list_admits_exactly_its_networks() -> None:
    allowed = ssrf.allowed_networks("127.0.0.1/32, 10.20.0.0/16")
    assert ssrf.refusal("127.0.0.1", allowed) is None
    assert ssrf.refusal("::ffff:127.0.0.1", allowed) is None  # the same address, mapped
    assert ssrf.refusal("10.20.3.4", allowed) is None
    assert ssrf.refusal("127.0.0.2", allowed) is not None
    assert ssrf.refusal("10.21.0.1", allowed) is not None
    assert ssrf.refusal("::1", allowed) is not None
    assert ssrf.allowed_networks("") == ()
    with pytest.raises(ConfigurationError):
        ssrf.allowed_networks("127.0.0.1/33")


@given(st.ip_addresses(v=4))
def test_an_ipv4_mapped_address_gets_the_verdict_of_its_ipv4(ip: ipaddress.IPv4Address) -> None:
    mapped = ipaddress.IPv6Address(f"::ffff:{ip}")
    assert (ssrf.refusal(str(mapped)) is None) == (ssrf.refusal(str(ip)) is None)


@given(st.sampled_from(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8",
                        "169.254.0.0/16", "100.64.0.0/10", "fc00::/7", "fe80::/10"]),
       st.integers(0, 2**64))  # fmt: skip
def test_every_address_of_a_private_range_is_refused(net: str, offset: int) -> None:
    network = ipaddress.ip_network(net)
    address = network[offset % network.num_addresses]
    assert ssrf.refusal(str(address)) is not None


def _resolver(table: dict[str, list[str]]) -> ssrf.Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError("no such host")
        return table[host]

    return resolve


async def test_names_are_judged_by_every_address_they_resolve_to() -> None:
    resolve = _resolver({
        "public.example": ["93.184.216.34"],
        "internal.example": ["10.1.2.3"],
        "both.example": ["93.184.216.34", "10.1.2.3"],
        "v6loop.example": ["::1"],
    })  # fmt: skip
    target = await ssrf.check("https://public.example/hooks", allowed=(), resolver=resolve)
    assert target.addresses == ("93.184.216.34",) and target.port == 443
    for url, why in (
        ("https://internal.example/x", "private"),
        ("https://both.example/x", "private"),
        ("https://v6loop.example/x", "loopback"),
        ("https://missing.example/x", "resolve"),
        ("http://public.example/x", "https"),
    ):
        with pytest.raises(ssrf.UrlRefused, match=why):
            await ssrf.check(url, allowed=(), resolver=resolve)


async def test_registering_a_name_that_resolves_to_10_x_writes_nothing(db: AsyncSession) -> None:
    guard = Guard(resolver=_resolver({"hooks.example.net": ["10.9.8.7"]}))
    with pytest.raises(ssrf.UrlRefused, match=r"10\.9\.8\.7"):
        await create_endpoint(
            db, url="https://hooks.example.net/coachpay", guard=guard, actor_user_id=None, now=NOW
        )
    assert (await db.execute(text("SELECT count(*) FROM outbox_endpoints"))).scalar_one() == 0
