"""The state machines' diagrams, generated from their tables of allowed transitions.

``uv run python -m scripts.state_diagrams`` prints one mermaid ``stateDiagram-v2``
block per machine; docs/design.md holds the same blocks
(tests/states/test_state_diagrams.py fails when they differ).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ledger.models import EARNING_ALLOWED, EARNING_INITIAL
from payouts.models import PAYOUT_ALLOWED, PAYOUT_INITIAL
from sessions.models import BOOKING_ALLOWED, BOOKING_INITIAL


@dataclass(frozen=True, slots=True)
class Machine:
    name: str
    where: str
    allowed: Mapping[Any, frozenset[Any]]
    initial: frozenset[Any]


MACHINES = (
    Machine("booking", "sessions/models.py BOOKING_ALLOWED", BOOKING_ALLOWED, BOOKING_INITIAL),
    Machine("payout", "payouts/models.py PAYOUT_ALLOWED", PAYOUT_ALLOWED, PAYOUT_INITIAL),
    Machine("earning", "ledger/models.py EARNING_ALLOWED", EARNING_ALLOWED, EARNING_INITIAL),
)


def diagram(machine: Machine) -> str:
    """The mermaid block: the start, every edge in the enum's order, the ends."""
    states: list[StrEnum] = list(machine.allowed)
    order = list(type(states[0]))
    lines = ["```mermaid", "stateDiagram-v2", f"    %% {machine.name}: {machine.where}"]
    lines += [f"    [*] --> {s}" for s in order if s in machine.initial]
    for a in order:
        lines += [f"    {a} --> {b}" for b in order if b in machine.allowed[a]]
    lines += [f"    {s} --> [*]" for s in order if not machine.allowed[s] - {s}]
    lines.append("```")
    return "\n".join(lines)


def diagrams() -> dict[str, str]:
    return {m.name: diagram(m) for m in MACHINES}


def main() -> None:
    print("\n\n".join(diagrams().values()))


if __name__ == "__main__":
    main()
