"""qa.memory: freed heap pages go back to the OS."""

from __future__ import annotations

import platform

import pytest

from qa.memory import peak_rss_bytes, rss_bytes, trim_heap


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_trim_heap_returns_freed_pages_on_glibc():
    def rss_kib() -> int:
        return rss_bytes() // 1024

    blocks = [bytearray(64 * 1024) for _ in range(2000)]  # ~128 MiB of small blocks on malloc's heap
    blocks[-1][0] = 1
    del blocks[:-1]  # the heap's top is still held, so free() alone cannot shrink it
    before = rss_kib()
    assert trim_heap() is True
    assert before - rss_kib() > 64 * 1024  # over 64 MiB given back


@pytest.mark.skipif(platform.system() != "Linux", reason="reads /proc")
def test_peak_rss_is_in_bytes_and_at_least_the_current_rss():
    with open("/proc/self/status") as f:
        status = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if line.startswith(("VmRSS", "VmHWM"))}
    peak = peak_rss_bytes()
    assert status["VmRSS"] <= peak <= 2 * status["VmHWM"]


@pytest.mark.skipif(platform.system() != "Linux", reason="reads /proc")
def test_rss_is_in_bytes_and_follows_what_the_process_touches():
    with open("/proc/self/status") as f:
        vm_rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))
    assert abs(rss_bytes() - vm_rss) < 8 * 2**20
    before = rss_bytes()
    block = bytearray(64 * 2**20)  # zero-filled, so every page is touched
    assert rss_bytes() - before > 48 * 2**20
    assert rss_bytes() <= peak_rss_bytes()
    del block
