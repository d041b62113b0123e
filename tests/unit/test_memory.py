import platform

import pytest

from backup.memory import return_large_buffers


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's threshold is a glibc setting")
def test_glibc_accepts_the_fixed_mmap_threshold() -> None:
    assert return_large_buffers() is True
