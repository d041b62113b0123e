"""The time an invocation has: OpenWhisk's `__OW_DEADLINE`, or a budget given to the CLI or a job.

Pure logic. A backup stops reading `margin` seconds before the deadline, so it can store its
checkpoint in time; the platform kills the process at the deadline itself.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass
class Deadline:
    at: float | None  # epoch seconds; None: no deadline (run to the end)
    margin: float = 0.0
    clock: Callable[[], float] = field(default=time.time, repr=False)

    @classmethod
    def none(cls) -> Deadline:
        return cls(None)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], budget: int | None, margin: int | None,
                         clock: Callable[[], float] = time.time) -> Deadline:
        """The earliest of `__OW_DEADLINE` (epoch ms, a string) and now + `budget` seconds.

        Without an explicit margin: a quarter of the time available, at least 1 s and at most 30 s, which
        leaves room for the last part, the tail and the checkpoint to reach COS.
        """
        now = clock()
        candidates = []
        raw = environ.get("__OW_DEADLINE", "").strip()
        if re.fullmatch(r"[0-9]+", raw):  # ASCII digits only: "²".isdigit() is true, int("²") fails
            candidates.append(int(raw) / 1000.0)
        if budget:
            candidates.append(now + budget)
        if not candidates:
            return cls(None, clock=clock)
        at = min(candidates)
        gap = float(margin) if margin is not None else min(30.0, max(1.0, (at - now) / 4))
        return cls(at, gap, clock)

    def remaining(self) -> float | None:
        return None if self.at is None else self.at - self.clock()

    def reached(self) -> bool:
        """True once it is time to stop and checkpoint."""
        return self.at is not None and self.clock() >= self.at - self.margin
