"""Multipart planning (pure): how big each part is, within COS limits.

COS allows parts of 5 MiB..5 GiB (only the last may be smaller) and at most 10,000 parts.
Starting at `base` bytes and doubling every 1,000 parts keeps small backups in small parts
(bounded memory) yet reaches 1000 * base * (2^10 - 1) (about 5 TB from 5 MiB) within 10,000 parts.
"""

from __future__ import annotations

MIN_PART = 5 * 1024 * 1024  # the smallest part S3/COS accept (except the last)
MAX_PART = 5 * 1024 * 1024 * 1024  # the largest part S3/COS accept
MAX_PARTS = 10_000
PARTS_PER_STEP = 1_000


def part_size(part_number: int, base: int) -> int:
    """Size of part `part_number` (1-based) when the first parts are `base` bytes."""
    if not 1 <= part_number <= MAX_PARTS:
        raise ValueError(f"part number {part_number} outside 1..{MAX_PARTS}")
    size = max(base, MIN_PART) << ((part_number - 1) // PARTS_PER_STEP)
    return min(size, MAX_PART)


def capacity(base: int) -> int:
    """The largest object the plan can hold."""
    return sum(part_size(n, base) for n in range(1, MAX_PARTS + 1))
