"""A state machine as data: each status and the statuses it may move to.

Every machine's table (``ALLOWED``) sits next to its status enum; the code
that changes a status calls ``check`` with it, and migration 0016 holds the
same tables for the database's triggers (a test keeps the two equal).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar

from core.errors import IllegalTransition

S = TypeVar("S", bound=StrEnum)


def check(machine: str, table: Mapping[S, frozenset[S]], from_status: str, to_status: str) -> None:
    """Raise ``IllegalTransition`` unless ``from_status -> to_status`` is an edge of ``table``.

    A status stays itself only where the table says so (a self-edge)."""
    allowed = {str(k): {str(v) for v in vs} for k, vs in table.items()}
    if str(to_status) not in allowed.get(str(from_status), set()):
        raise IllegalTransition(machine, from_status, to_status)


def edges(table: Mapping[S, frozenset[S]]) -> list[tuple[str, str]]:
    """The table's edges, in the enum's order (diagrams, migrations' tests)."""
    return [(str(a), str(b)) for a, bs in table.items() for b in type(a) if b in bs]
