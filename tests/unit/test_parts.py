"""Multipart plan: every part within COS limits, and room for more than 1 TB."""

from __future__ import annotations

import itertools

import pytest

from backup.parts import MAX_PART, MAX_PARTS, MIN_PART, capacity, part_size

MIB = 1024 * 1024
GIB = 1024 * MIB
BASES = [1, 5 * MIB, 8 * MIB, 100 * MIB, 5 * GIB, 6 * GIB]
BASE_IDS = ["1-byte", "5MiB", "8MiB", "100MiB", "5GiB", "6GiB"]


def test_cos_limits_are_the_documented_ones() -> None:
    assert (MIN_PART, MAX_PART, MAX_PARTS) == (5 * MIB, 5 * GIB, 10_000)


@pytest.mark.parametrize("base", BASES, ids=BASE_IDS)
def test_every_part_is_within_cos_limits(base: int) -> None:
    sizes = [part_size(n, base) for n in range(1, MAX_PARTS + 1)]
    assert min(sizes) >= 5 * MIB
    assert max(sizes) <= 5 * GIB


@pytest.mark.parametrize("base", BASES, ids=BASE_IDS)
def test_part_sizes_never_decrease(base: int) -> None:
    sizes = [part_size(n, base) for n in range(1, MAX_PARTS + 1)]
    assert all(a <= b for a, b in itertools.pairwise(sizes))


@pytest.mark.parametrize("number", [0, -1, 10_001, 20_000])
def test_part_numbers_outside_1_to_10000_raise(number: int) -> None:
    with pytest.raises(ValueError, match="outside 1..10000"):
        part_size(number, 8 * MIB)


@pytest.mark.parametrize("number", [1, 2, 999, 1000, 1001, 9999, 10_000])
def test_part_numbers_1_to_10000_are_valid(number: int) -> None:
    assert part_size(number, 8 * MIB) > 0


def test_first_parts_use_the_base_size() -> None:
    assert part_size(1, 8 * MIB) == 8 * MIB
    assert part_size(1000, 8 * MIB) == 8 * MIB
    assert part_size(1001, 8 * MIB) == 16 * MIB
    assert part_size(10_000, 8 * MIB) == 8 * MIB * 2**9  # 4 GiB


def test_base_below_cos_minimum_is_raised_to_it() -> None:
    assert part_size(1, 1 * MIB) == 5 * MIB


def test_capacity_from_8_mib_is_about_8_6_tb() -> None:
    # 1000 parts at each of 8 MiB, 16 MiB, ... 4 GiB: 8 MiB * 1000 * (2^10 - 1) = 8,581,545,984,000 bytes
    # (8.58 TB, 7.8 TiB).
    assert capacity(8 * MIB) == 8 * MIB * 1000 * 1023 == 8_581_545_984_000
    assert capacity(8 * MIB) >= 10**12


def test_capacity_from_the_smallest_allowed_base_exceeds_1_tb() -> None:
    # PART_SIZE_MB may go down to 5; capacity grows with the base, so this is the worst case.
    assert capacity(5 * MIB) == 5 * MIB * 1000 * 1023
    assert capacity(5 * MIB) >= 10**12


def test_capacity_equals_the_sum_of_the_parts() -> None:
    assert capacity(100 * MIB) == sum(part_size(n, 100 * MIB) for n in range(1, MAX_PARTS + 1))


def test_an_upload_past_the_last_part_number_is_a_clear_cos_error() -> None:
    """Not a ValueError from the part plan (kind "internal"): the error says what to change."""
    from backup.cos import MultipartUpload
    from backup.errors import CosError
    from backup.log import Log

    upload = MultipartUpload(None, "bucket", "key", 5 * MIB, Log(quiet=True), upload_id="resumed", next_part=MAX_PARTS + 1)
    upload.write(b"[]\n")  # no request is made before a part is due
    with pytest.raises(CosError, match="more than 10000 parts needed; raise PART_SIZE_MB"):
        upload.complete()
