"""Request and fault counters for `GET /_emulator/stats` (benchmarks and fault tests read them)."""

from __future__ import annotations

from collections import Counter
from typing import Any


class Stats:
    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.idempotent_replays = 0
        self.idempotency_conflicts = 0

    def count(self, method: str, template: str) -> None:
        self.requests[f"{method} {template}"] += 1

    def reset(self) -> None:
        self.requests.clear()
        self.idempotent_replays = 0
        self.idempotency_conflicts = 0

    def describe(self, faults: Counter[str]) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "faults": {
                kind: faults.get(kind, 0)
                for kind in (
                    "429",
                    "500",
                    "drop",
                    "drop_after_commit",
                    "timeout",
                    "timeout_after_commit",
                    "rate_limited",
                )
            },
            "idempotent_replays": self.idempotent_replays,
            "idempotency_conflicts": self.idempotency_conflicts,
        }
