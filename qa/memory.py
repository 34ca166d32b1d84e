"""Give the heap's free pages back to the operating system.

A batch of answers allocates a few hundred MB of short-lived buffers (the reader's windows, the
generator's key/value cache); glibc's malloc keeps the freed pages in its arenas, so the process's RSS
stays at its high-water mark long after the batch. ``malloc_trim(0)`` returns them. The model worker
calls it when its queue runs empty, so an idle server sits at its working set, not its peak
(measured in ``make loadtest``: idle server RSS 1482–1524 MiB -> 1200–1217 MiB).

Example::

    >>> trim_heap()  # False where the C library has no malloc_trim (musl, macOS)
    True
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import resource
import sys


@functools.cache
def _malloc_trim():  # noqa: ANN202 - a ctypes function, or None
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def trim_heap() -> bool:
    """Return freed heap pages to the OS (about 5 ms after a batch); False where unsupported."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def peak_rss_bytes() -> int:
    """The most resident memory this process has held since it started (its RSS high-water mark)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def rss_bytes() -> int:
    """The resident memory this process holds now (Linux's /proc; 0 where there is none)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0
