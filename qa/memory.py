"""Memory of this process: its resident size and peak, and giving the heap's free pages back to the
operating system (`trim_heap`, which lives in `index.memory` so the index layer can call it too).

Example::

    >>> peak_rss_bytes() > 0 and rss_bytes() > 0
    True
"""

from __future__ import annotations

import os
import resource
import sys

from index.memory import trim_heap

__all__ = ["peak_rss_bytes", "rss_bytes", "trim_heap"]


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
