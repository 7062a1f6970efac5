"""Fault injection for `/v1` requests: latency, 429, 500, timeouts, dropped connections.

Random faults come from one seeded generator and one draw per matching request, so the same seed
and the same request sequence give the same faults. Queued faults (`faults/next`) are consumed
first, one per matching request, for tests that need an exact script.
"""

from __future__ import annotations

import random
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import Any

from emulator.errors import ControlError

KINDS = ("429", "500", "timeout", "drop", "drop_after_commit", "timeout_after_commit")
QUEUE_KINDS = (*KINDS, "none")
AFTER_COMMIT = frozenset({"drop_after_commit", "timeout_after_commit"})


@dataclass
class FaultConfig:
    seed: int = 0
    latency_ms: int = 0
    latency_jitter_ms: int = 0
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_timeout: float = 0.0
    rate_drop: float = 0.0
    rate_drop_after_commit: float = 0.0
    rate_timeout_after_commit: float = 0.0
    paths: list[str] = field(default_factory=lambda: ["/v1"])
    methods: list[str] | None = None
    max_requests_per_second: float | None = None
    timeout_seconds: float = 30.0


@dataclass
class QueuedFaults:
    path_prefix: str
    method: str | None
    faults: deque[str]


@dataclass
class Decision:
    latency: float = 0.0
    kind: str | None = None  # one of KINDS, "rate_limited", or None
    timeout_seconds: float = 30.0


class FaultInjector:
    def __init__(self, seed: int = 0) -> None:
        self.config = FaultConfig(seed=seed)
        self._rng = random.Random(seed)
        self._queues: list[QueuedFaults] = []
        self._tokens = 0.0
        self._last_refill = time.monotonic()
        self.injected: Counter[str] = Counter()

    def configure(self, body: dict[str, Any]) -> None:
        known = set(FaultConfig.__dataclass_fields__)
        unknown = set(body) - known
        if unknown:
            raise ControlError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        try:
            config = FaultConfig(**body)
        except TypeError as exc:
            raise ControlError(str(exc)) from None
        rates = [getattr(config, f"rate_{k}") for k in KINDS]
        if any(r < 0 for r in rates) or sum(rates) > 1:
            raise ControlError("fault rates must be >= 0 and add up to at most 1")
        self.config = config
        self._rng = random.Random(config.seed)
        self._tokens = config.max_requests_per_second or 0.0
        self._last_refill = time.monotonic()

    def queue(self, body: dict[str, Any]) -> None:
        faults = body.get("faults")
        if not isinstance(faults, list) or not all(f in QUEUE_KINDS for f in faults):
            raise ControlError(f"faults must be a list of {', '.join(QUEUE_KINDS)}")
        prefix = body.get("path_prefix", "/v1")
        method = body.get("method")
        self._queues.append(
            QueuedFaults(str(prefix), str(method).upper() if method else None, deque(faults))
        )

    def clear(self, seed: int | None = None) -> None:
        self.config = FaultConfig(seed=self.config.seed if seed is None else seed)
        self._rng = random.Random(self.config.seed)
        self._queues = []

    def describe(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "queued": [
                {"path_prefix": q.path_prefix, "method": q.method, "faults": list(q.faults)}
                for q in self._queues
                if q.faults
            ],
        }

    def decide(self, method: str, path: str) -> Decision:
        config = self.config
        decision = Decision(timeout_seconds=config.timeout_seconds)
        for queued in self._queues:
            method_matches = queued.method is None or queued.method == method
            if queued.faults and path.startswith(queued.path_prefix) and method_matches:
                kind = queued.faults.popleft()
                decision.kind = None if kind == "none" else kind
                return self._count(decision)
        if not any(path.startswith(p) for p in config.paths):
            return decision
        if config.methods and method not in config.methods:
            return decision
        if config.latency_ms or config.latency_jitter_ms:
            jitter = self._rng.uniform(0, config.latency_jitter_ms)
            decision.latency = (config.latency_ms + jitter) / 1000
        if config.max_requests_per_second and not self._take_token(config.max_requests_per_second):
            decision.kind = "rate_limited"
            return self._count(decision)
        draw = self._rng.random()
        threshold = 0.0
        for kind in KINDS:
            threshold += getattr(config, f"rate_{kind}")
            if draw < threshold:
                decision.kind = kind
                break
        return self._count(decision)

    def _take_token(self, rate: float) -> bool:
        # Token bucket holding at most one second's worth of requests.
        now = time.monotonic()
        self._tokens = min(rate, self._tokens + (now - self._last_refill) * rate)
        self._last_refill = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def _count(self, decision: Decision) -> Decision:
        if decision.kind is not None:
            self.injected[decision.kind] += 1
        return decision
