"""Peak memory: freed large buffers go back to the system instead of staying in the process."""

from __future__ import annotations

import ctypes

# glibc's mallopt parameter, and its default starting value.
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024


def return_large_buffers() -> bool:
    """Keep glibc from moving large blocks (parts, pages) onto the heap, where freed space stays resident.

    glibc raises its mmap threshold each time a large block is freed (up to 32 MiB); after the first part
    the 5 MiB parts and multi-MiB pages then come from the heap, and a backup's peak RSS grows by the
    fragments left there. Fixing the threshold keeps every large block mapped and unmapped on free.
    False where it does not apply (not glibc): nothing else depends on it.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
